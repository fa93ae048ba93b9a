/*
 * Linux system calls that Node does not offer and berth needs: mount(2) and umount2(2),
 * mknod(2), the l*xattr(2) family, prctl(PR_SET_CHILD_SUBREAPER), pidfd_open(2) and
 * waitid(2), pipe2(2), unix listening sockets and SCM_RIGHTS fd passing (runc's
 * --console-socket), TIOCSWINSZ, and TCP sockets made inside another network namespace (setns(2)
 * around socket(2)) with a connect waited for on libuv's loop. Every failure throws an Error with `code` set to the errno name and
 * `syscall`/`path` naming the call, as Node's own fs errors do.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <node_api.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/types.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <termios.h>
#include <unistd.h>
#include <uv.h>

#define MAX_STR 65536

static napi_value errno_error(napi_env env, int err, const char *syscall, const char *path) {
  napi_value msg, error, code, sc;
  char buf[MAX_STR + 128];
  const char *name = strerrorname_np(err);
  if (!name) name = "EUNKNOWN";
  if (path)
    snprintf(buf, sizeof buf, "%s: %s, %s '%s'", name, strerror(err), syscall, path);
  else
    snprintf(buf, sizeof buf, "%s: %s, %s", name, strerror(err), syscall);
  napi_create_string_utf8(env, buf, NAPI_AUTO_LENGTH, &msg);
  napi_create_error(env, NULL, msg, &error);
  napi_create_string_utf8(env, name, NAPI_AUTO_LENGTH, &code);
  napi_set_named_property(env, error, "code", code);
  napi_create_string_utf8(env, syscall, NAPI_AUTO_LENGTH, &sc);
  napi_set_named_property(env, error, "syscall", sc);
  napi_value errnum;
  napi_create_int32(env, -err, &errnum);
  napi_set_named_property(env, error, "errno", errnum);
  if (path) {
    napi_value p;
    napi_create_string_utf8(env, path, NAPI_AUTO_LENGTH, &p);
    napi_set_named_property(env, error, "path", p);
  }
  return error;
}

static napi_value throw_errno(napi_env env, int err, const char *syscall, const char *path) {
  napi_throw(env, errno_error(env, err, syscall, path));
  return NULL;
}

static int get_string(napi_env env, napi_value v, char **out) {
  size_t len;
  napi_valuetype t;
  napi_typeof(env, v, &t);
  if (t == napi_null || t == napi_undefined) {
    *out = NULL;
    return 0;
  }
  if (napi_get_value_string_utf8(env, v, NULL, 0, &len) != napi_ok) {
    napi_throw_type_error(env, NULL, "expected a string");
    return -1;
  }
  *out = malloc(len + 1);
  napi_get_value_string_utf8(env, v, *out, len + 1, &len);
  return 0;
}

#define ARGS(n)                                                      \
  size_t argc = n;                                                   \
  napi_value argv[n];                                                \
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);              \
  if (argc < n) {                                                    \
    napi_throw_type_error(env, NULL, "expected " #n " arguments");   \
    return NULL;                                                     \
  }

static int64_t get_i64(napi_env env, napi_value v) {
  int64_t x = 0;
  napi_get_value_int64(env, v, &x);
  return x;
}

/*
 * mount(source, target, fstype, flags, data, cwd?): with cwd, a forked child changes into it
 * first, so overlay lowerdir lists may use short relative paths (the kernel bounds the option
 * string by a page); the parent's working directory is never touched.
 */
static napi_value js_mount(napi_env env, napi_callback_info info) {
  size_t argc = 6;
  napi_value argv[6];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 5) {
    napi_throw_type_error(env, NULL, "mount(source, target, fstype, flags, data, cwd?)");
    return NULL;
  }
  char *source = NULL, *target = NULL, *fstype = NULL, *data = NULL, *cwd = NULL;
  napi_value result = NULL;
  if (get_string(env, argv[0], &source) || get_string(env, argv[1], &target) ||
      get_string(env, argv[2], &fstype) || get_string(env, argv[4], &data) ||
      (argc > 5 && get_string(env, argv[5], &cwd)))
    goto out;
  unsigned long flags = (unsigned long)get_i64(env, argv[3]);
  if (cwd) {
    pid_t pid = fork();
    if (pid < 0) {
      throw_errno(env, errno, "fork", target);
      goto out;
    }
    if (pid == 0) {
      if (chdir(cwd) != 0) _exit(errno);
      if (mount(source, target, fstype, flags, data) != 0) _exit(errno);
      _exit(0);
    }
    int status;
    while (waitpid(pid, &status, 0) < 0) {
      if (errno != EINTR) {
        throw_errno(env, errno, "waitpid", target);
        goto out;
      }
    }
    if (!WIFEXITED(status)) {
      throw_errno(env, EIO, "mount", target);
      goto out;
    }
    if (WEXITSTATUS(status) != 0) {
      throw_errno(env, WEXITSTATUS(status), "mount", target);
      goto out;
    }
  } else if (mount(source, target, fstype, flags, data) != 0) {
    throw_errno(env, errno, "mount", target);
    goto out;
  }
  napi_get_undefined(env, &result);
out:
  free(source);
  free(target);
  free(fstype);
  free(data);
  free(cwd);
  return result;
}

static napi_value js_umount(napi_env env, napi_callback_info info) {
  ARGS(2);
  char *target = NULL;
  if (get_string(env, argv[0], &target)) return NULL;
  int flags = (int)get_i64(env, argv[1]);
  int rc = umount2(target, flags);
  napi_value result = NULL;
  if (rc != 0)
    throw_errno(env, errno, "umount2", target);
  else
    napi_get_undefined(env, &result);
  free(target);
  return result;
}

static napi_value js_mknod(napi_env env, napi_callback_info info) {
  ARGS(4);
  char *path = NULL;
  if (get_string(env, argv[0], &path)) return NULL;
  mode_t mode = (mode_t)get_i64(env, argv[1]);
  dev_t dev = makedev((unsigned)get_i64(env, argv[2]), (unsigned)get_i64(env, argv[3]));
  napi_value result = NULL;
  if (mknod(path, mode, dev) != 0)
    throw_errno(env, errno, "mknod", path);
  else
    napi_get_undefined(env, &result);
  free(path);
  return result;
}

static napi_value js_lsetxattr(napi_env env, napi_callback_info info) {
  ARGS(4);
  char *path = NULL, *name = NULL;
  napi_value result = NULL;
  void *data;
  size_t len;
  if (get_string(env, argv[0], &path) || get_string(env, argv[1], &name)) goto out;
  if (napi_get_buffer_info(env, argv[2], &data, &len) != napi_ok) {
    napi_throw_type_error(env, NULL, "value must be a Buffer");
    goto out;
  }
  if (lsetxattr(path, name, data, len, (int)get_i64(env, argv[3])) != 0)
    throw_errno(env, errno, "lsetxattr", path);
  else
    napi_get_undefined(env, &result);
out:
  free(path);
  free(name);
  return result;
}

/* Returns a Buffer, or undefined when the attribute does not exist. */
static napi_value js_lgetxattr(napi_env env, napi_callback_info info) {
  ARGS(2);
  char *path = NULL, *name = NULL;
  napi_value result = NULL;
  if (get_string(env, argv[0], &path) || get_string(env, argv[1], &name)) goto out;
  for (;;) {
    ssize_t n = lgetxattr(path, name, NULL, 0);
    if (n < 0) {
      if (errno == ENODATA) napi_get_undefined(env, &result);
      else throw_errno(env, errno, "lgetxattr", path);
      goto out;
    }
    void *buf;
    napi_value b;
    char *tmp = malloc(n > 0 ? n : 1);
    ssize_t m = lgetxattr(path, name, tmp, n);
    if (m < 0 && errno == ERANGE) {
      free(tmp);
      continue;
    }
    if (m < 0) {
      free(tmp);
      throw_errno(env, errno, "lgetxattr", path);
      goto out;
    }
    napi_create_buffer_copy(env, m, tmp, &buf, &b);
    free(tmp);
    result = b;
    goto out;
  }
out:
  free(path);
  free(name);
  return result;
}

static napi_value js_llistxattr(napi_env env, napi_callback_info info) {
  ARGS(1);
  char *path = NULL;
  napi_value result = NULL;
  if (get_string(env, argv[0], &path)) return NULL;
  for (;;) {
    ssize_t n = llistxattr(path, NULL, 0);
    if (n < 0) {
      if (errno == ENOTSUP) napi_create_array(env, &result);
      else throw_errno(env, errno, "llistxattr", path);
      break;
    }
    char *buf = malloc(n > 0 ? n : 1);
    ssize_t m = llistxattr(path, buf, n);
    if (m < 0 && errno == ERANGE) {
      free(buf);
      continue;
    }
    if (m < 0) {
      free(buf);
      throw_errno(env, errno, "llistxattr", path);
      break;
    }
    napi_create_array(env, &result);
    uint32_t i = 0;
    for (char *p = buf; p < buf + m; p += strlen(p) + 1) {
      napi_value s;
      napi_create_string_utf8(env, p, NAPI_AUTO_LENGTH, &s);
      napi_set_element(env, result, i++, s);
    }
    free(buf);
    break;
  }
  free(path);
  return result;
}

static napi_value js_lremovexattr(napi_env env, napi_callback_info info) {
  ARGS(2);
  char *path = NULL, *name = NULL;
  napi_value result = NULL;
  if (get_string(env, argv[0], &path) || get_string(env, argv[1], &name)) goto out;
  if (lremovexattr(path, name) != 0)
    throw_errno(env, errno, "lremovexattr", path);
  else
    napi_get_undefined(env, &result);
out:
  free(path);
  free(name);
  return result;
}

static napi_value js_set_child_subreaper(napi_env env, napi_callback_info info) {
  (void)info;
  napi_value result = NULL;
  if (prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0)
    throw_errno(env, errno, "prctl", NULL);
  else
    napi_get_undefined(env, &result);
  return result;
}

static napi_value js_pidfd_open(napi_env env, napi_callback_info info) {
  ARGS(1);
  int pid = (int)get_i64(env, argv[0]);
  int fd = (int)syscall(SYS_pidfd_open, pid, 0);
  if (fd < 0) return throw_errno(env, errno, "pidfd_open", NULL);
  fcntl(fd, F_SETFD, FD_CLOEXEC);
  napi_value r;
  napi_create_int32(env, fd, &r);
  return r;
}

static napi_value status_object(napi_env env, siginfo_t *si) {
  napi_value obj, v;
  napi_create_object(env, &obj);
  napi_create_int32(env, si->si_pid, &v);
  napi_set_named_property(env, obj, "pid", v);
  /* exitStatus follows the shell: 128 + signal for a killed process. */
  int exited = si->si_code == CLD_EXITED;
  napi_create_int32(env, exited ? si->si_status : 128 + si->si_status, &v);
  napi_set_named_property(env, obj, "exitStatus", v);
  if (!exited) {
    napi_create_int32(env, si->si_status, &v);
    napi_set_named_property(env, obj, "signal", v);
  }
  return obj;
}

/*
 * waitid(kind, id, nowait): kind 0 = P_PID (id is a pid), 1 = P_PIDFD (id is a pidfd), 2 = P_ALL.
 * Never blocks. Returns {pid, exitStatus, signal?} for an exited child (reaping it unless nowait),
 * or null when none has exited yet.
 */
static napi_value js_waitid(napi_env env, napi_callback_info info) {
  ARGS(3);
  int kind = (int)get_i64(env, argv[0]);
  int id = (int)get_i64(env, argv[1]);
  bool nowait = false;
  napi_get_value_bool(env, argv[2], &nowait);
  idtype_t idtype = kind == 0 ? P_PID : kind == 1 ? P_PIDFD : P_ALL;
  siginfo_t si;
  memset(&si, 0, sizeof si);
  int opts = WEXITED | WNOHANG | (nowait ? WNOWAIT : 0);
  int rc;
  do rc = waitid(idtype, (id_t)id, &si, opts);
  while (rc < 0 && errno == EINTR);
  napi_value r;
  if (rc < 0) {
    if (errno == ECHILD) {
      napi_get_null(env, &r);
      return r;
    }
    return throw_errno(env, errno, "waitid", NULL);
  }
  if (si.si_pid == 0) {
    napi_get_null(env, &r);
    return r;
  }
  return status_object(env, &si);
}


static napi_value int_pair(napi_env env, int a, int b) {
  napi_value arr, v;
  napi_create_array_with_length(env, 2, &arr);
  napi_create_int32(env, a, &v);
  napi_set_element(env, arr, 0, v);
  napi_create_int32(env, b, &v);
  napi_set_element(env, arr, 1, v);
  return arr;
}

/* pipe() -> [readFd, writeFd], both close-on-exec (spawn's dup2 into 0..2 clears it for the child). */
static napi_value js_pipe(napi_env env, napi_callback_info info) {
  (void)info;
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) return throw_errno(env, errno, "pipe2", NULL);
  return int_pair(env, fds[0], fds[1]);
}

/* dup(fd) -> a close-on-exec duplicate. */
static napi_value js_dup(napi_env env, napi_callback_info info) {
  ARGS(1);
  int fd = fcntl((int)get_i64(env, argv[0]), F_DUPFD_CLOEXEC, 3);
  if (fd < 0) return throw_errno(env, errno, "dup", NULL);
  napi_value r;
  napi_create_int32(env, fd, &r);
  return r;
}

/*
 * listenUnix(path, nonblock) -> a close-on-exec listening unix stream socket bound to path
 * (mode 0600). EADDRINUSE when the path exists, as bind(2) reports it.
 */
static napi_value js_listen_unix(napi_env env, napi_callback_info info) {
  ARGS(2);
  char *path = NULL;
  napi_value result = NULL;
  bool nonblock = false;
  if (get_string(env, argv[0], &path)) return NULL;
  napi_get_value_bool(env, argv[1], &nonblock);
  struct sockaddr_un addr;
  memset(&addr, 0, sizeof addr);
  addr.sun_family = AF_UNIX;
  if (!path || strlen(path) >= sizeof addr.sun_path) {
    throw_errno(env, ENAMETOOLONG, "bind", path ? path : "");
    goto out;
  }
  strcpy(addr.sun_path, path);
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | (nonblock ? SOCK_NONBLOCK : 0), 0);
  if (fd < 0) {
    throw_errno(env, errno, "socket", path);
    goto out;
  }
  if (bind(fd, (struct sockaddr *)&addr, sizeof addr) != 0) {
    int e = errno;
    close(fd);
    throw_errno(env, e, "bind", path);
    goto out;
  }
  if (chmod(path, 0600) != 0 || listen(fd, 128) != 0) {
    int e = errno;
    close(fd);
    unlink(path);
    throw_errno(env, e, "listen", path);
    goto out;
  }
  napi_create_int32(env, fd, &result);
out:
  free(path);
  return result;
}

/*
 * receiveFd(listenFd) -> the file descriptor the first pending connection sent with
 * SCM_RIGHTS (runc sends a pty master this way), close-on-exec. Never blocks: EAGAIN when
 * no peer has connected yet; ENOMSG when the peer sent no descriptor.
 */
static napi_value js_receive_fd(napi_env env, napi_callback_info info) {
  ARGS(1);
  int lfd = (int)get_i64(env, argv[0]);
  int conn = accept4(lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
  if (conn < 0) return throw_errno(env, errno, "accept4", NULL);
  char name[4096];
  struct iovec iov = {.iov_base = name, .iov_len = sizeof name};
  union {
    char buf[CMSG_SPACE(sizeof(int))];
    struct cmsghdr align;
  } control;
  memset(&control, 0, sizeof control);
  struct msghdr msg = {0};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control.buf;
  msg.msg_controllen = sizeof control.buf;
  ssize_t n;
  do n = recvmsg(conn, &msg, MSG_CMSG_CLOEXEC);
  while (n < 0 && errno == EINTR);
  int e = errno;
  close(conn);
  if (n < 0) return throw_errno(env, e, "recvmsg", NULL);
  struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
  if (!c || c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS || c->cmsg_len != CMSG_LEN(sizeof(int)))
    return throw_errno(env, ENOMSG, "recvmsg", NULL);
  int fd;
  memcpy(&fd, CMSG_DATA(c), sizeof fd);
  napi_value r;
  napi_create_int32(env, fd, &r);
  return r;
}

/* setNonblocking(fd, on): O_NONBLOCK on the file description (shared with every dup of it). */
static napi_value js_set_nonblocking(napi_env env, napi_callback_info info) {
  ARGS(2);
  int fd = (int)get_i64(env, argv[0]);
  bool on = false;
  napi_get_value_bool(env, argv[1], &on);
  int flags = fcntl(fd, F_GETFL);
  if (flags < 0 || fcntl(fd, F_SETFL, on ? flags | O_NONBLOCK : flags & ~O_NONBLOCK) != 0)
    return throw_errno(env, errno, "fcntl", NULL);
  napi_value r;
  napi_get_undefined(env, &r);
  return r;
}

/* setWinsize(fd, rows, cols): TIOCSWINSZ on a terminal (a pty master resizes its slave). */
static napi_value js_set_winsize(napi_env env, napi_callback_info info) {
  ARGS(3);
  int fd = (int)get_i64(env, argv[0]);
  struct winsize ws;
  memset(&ws, 0, sizeof ws);
  ws.ws_row = (unsigned short)get_i64(env, argv[1]);
  ws.ws_col = (unsigned short)get_i64(env, argv[2]);
  if (ioctl(fd, TIOCSWINSZ, &ws) != 0) return throw_errno(env, errno, "ioctl", NULL);
  napi_value r;
  napi_get_undefined(env, &r);
  return r;
}

/* getWinsize(fd) -> [rows, cols] (TIOCGWINSZ). */
static napi_value js_get_winsize(napi_env env, napi_callback_info info) {
  ARGS(1);
  int fd = (int)get_i64(env, argv[0]);
  struct winsize ws;
  if (ioctl(fd, TIOCGWINSZ, &ws) != 0) return throw_errno(env, errno, "ioctl", NULL);
  return int_pair(env, ws.ws_row, ws.ws_col);
}

/*
 * tcpSocketInNetns(netnsPath, family) -> a TCP socket (4: AF_INET, 6: AF_INET6; non-blocking,
 * close-on-exec) that belongs to the network namespace at netnsPath (/proc/<pid>/ns/net or a
 * bind mount of one, as CNI's netns files are). A socket keeps the namespace it was made in for
 * its whole life, so only its creation needs the thread inside: the calling thread (Node's main
 * thread) enters, makes the socket and returns before any other code runs on it. setns(2) is per
 * thread, so libuv's pool and V8's threads never leave their namespace.
 */
static napi_value js_tcp_socket_in_netns(napi_env env, napi_callback_info info) {
  ARGS(2);
  char *path = NULL;
  napi_value result = NULL;
  int target = -1, self = -1;
  if (get_string(env, argv[0], &path)) return NULL;
  if (!path) {
    napi_throw_type_error(env, NULL, "netnsPath must be a string");
    return NULL;
  }
  int family = get_i64(env, argv[1]) == 6 ? AF_INET6 : AF_INET;
  target = open(path, O_RDONLY | O_CLOEXEC);
  if (target < 0) {
    throw_errno(env, errno, "open", path);
    goto out;
  }
  self = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
  if (self < 0) {
    throw_errno(env, errno, "open", "/proc/thread-self/ns/net");
    goto out;
  }
  /* EINVAL: the file is not a network namespace; the thread has not moved. */
  if (setns(target, CLONE_NEWNET) != 0) {
    throw_errno(env, errno, "setns", path);
    goto out;
  }
  int fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  int socket_err = errno;
  if (setns(self, CLONE_NEWNET) != 0) {
    /*
     * The main thread is stuck in the pod's namespace: every socket the process makes from now on
     * (registry pulls, shim and plugin connections, the next port-forward's "host" dial) would
     * silently live in the pod's network, and the pod could see host traffic. Nothing can put the
     * thread back (the same call just failed) nor retire it (it is the event loop), and an error
     * thrown here would be caught and the daemon would run on in the wrong namespace. Dying loudly
     * lets the supervisor restart a daemon whose state is recovered from disk.
     */
    fprintf(stderr,
            "@berth/sys: FATAL: cannot return to the thread's own network namespace after making a "
            "socket in %s: %s; aborting rather than run on inside it\n",
            path, strerror(errno));
    abort();
  }
  if (fd < 0) {
    throw_errno(env, socket_err, "socket", path);
    goto out;
  }
  napi_create_int32(env, fd, &result);
out:
  if (target >= 0) close(target);
  if (self >= 0) close(self);
  free(path);
  return result;
}

/* Node's own shape for a failed connect, so callers see the same text as from net.connect. */
static napi_value connect_error(napi_env env, int err, const char *host, int port) {
  char buf[256];
  const char *name = strerrorname_np(err);
  if (!name) name = "EUNKNOWN";
  snprintf(buf, sizeof buf, "connect %s %s:%d", name, host, port);
  napi_value msg, error, v;
  napi_create_string_utf8(env, buf, NAPI_AUTO_LENGTH, &msg);
  napi_create_error(env, NULL, msg, &error);
  napi_create_string_utf8(env, name, NAPI_AUTO_LENGTH, &v);
  napi_set_named_property(env, error, "code", v);
  napi_create_int32(env, -err, &v);
  napi_set_named_property(env, error, "errno", v);
  napi_create_string_utf8(env, "connect", NAPI_AUTO_LENGTH, &v);
  napi_set_named_property(env, error, "syscall", v);
  napi_create_string_utf8(env, host, NAPI_AUTO_LENGTH, &v);
  napi_set_named_property(env, error, "address", v);
  napi_create_int32(env, port, &v);
  napi_set_named_property(env, error, "port", v);
  return error;
}

typedef struct {
  uv_poll_t poll;
  napi_env env;
  napi_deferred deferred;
  napi_async_context actx;
  napi_ref resource;
  int fd;
  int err;
  int port;
  char host[INET6_ADDRSTRLEN];
} connect_wait;

static void connect_settled(uv_handle_t *h) {
  connect_wait *w = h->data;
  napi_env env = w->env;
  napi_handle_scope hs;
  napi_open_handle_scope(env, &hs);
  napi_value resource;
  napi_get_reference_value(env, w->resource, &resource);
  /* A callback scope, so that the promise's reactions run now rather than at some later JS call. */
  napi_callback_scope cs;
  napi_open_callback_scope(env, resource, w->actx, &cs);
  if (w->err == 0) {
    napi_value u;
    napi_get_undefined(env, &u);
    napi_resolve_deferred(env, w->deferred, u);
  } else {
    napi_reject_deferred(env, w->deferred, connect_error(env, w->err, w->host, w->port));
  }
  napi_close_callback_scope(env, cs);
  napi_async_destroy(env, w->actx);
  napi_delete_reference(env, w->resource);
  napi_close_handle_scope(env, hs);
  free(w);
}

static void connect_writable(uv_poll_t *h, int status, int events) {
  connect_wait *w = h->data;
  int e = 0;
  socklen_t len = sizeof e;
  /* libuv reports POLLERR (a refused connect) as UV_EBADF: the socket's own error says what happened. */
  if (getsockopt(w->fd, SOL_SOCKET, SO_ERROR, &e, &len) != 0) e = errno;
  if (e == 0 && status < 0) e = -status;
  w->err = e;
  /* The promise settles once the poll handle is closed, so the fd is free for net.Socket's own watcher. */
  uv_close((uv_handle_t *)h, connect_settled);
}

/*
 * connectTcp(fd, host, port) -> Promise<void>: a non-blocking connect(2) of a socket to an IP
 * literal, waited for on the event loop (uv_poll for writability, then SO_ERROR). Rejects with
 * Node's connect error shape (`connect ECONNREFUSED 127.0.0.1:80`, code, errno, address, port).
 * The fd must not be closed before the promise settles.
 */
static napi_value js_connect_tcp(napi_env env, napi_callback_info info) {
  ARGS(3);
  int fd = (int)get_i64(env, argv[0]);
  char *host = NULL;
  if (get_string(env, argv[1], &host)) return NULL;
  int port = (int)get_i64(env, argv[2]);
  union {
    struct sockaddr sa;
    struct sockaddr_in in4;
    struct sockaddr_in6 in6;
  } addr;
  socklen_t addrlen;
  memset(&addr, 0, sizeof addr);
  if (host && inet_pton(AF_INET, host, &addr.in4.sin_addr) == 1) {
    addr.in4.sin_family = AF_INET;
    addr.in4.sin_port = htons((uint16_t)port);
    addrlen = sizeof addr.in4;
  } else if (host && inet_pton(AF_INET6, host, &addr.in6.sin6_addr) == 1) {
    addr.in6.sin6_family = AF_INET6;
    addr.in6.sin6_port = htons((uint16_t)port);
    addrlen = sizeof addr.in6;
  } else {
    free(host);
    napi_throw_type_error(env, NULL, "host must be an IPv4 or IPv6 address");
    return NULL;
  }
  napi_value promise;
  napi_deferred deferred;
  napi_create_promise(env, &deferred, &promise);
  /* EINTR on a non-blocking connect: the attempt goes on, as with EINPROGRESS. */
  if (connect(fd, &addr.sa, addrlen) == 0) {
    napi_value u;
    napi_get_undefined(env, &u);
    napi_resolve_deferred(env, deferred, u);
    goto out;
  }
  if (errno != EINPROGRESS && errno != EINTR) {
    napi_reject_deferred(env, deferred, connect_error(env, errno, host, port));
    goto out;
  }
  uv_loop_t *loop;
  napi_get_uv_event_loop(env, &loop);
  connect_wait *w = calloc(1, sizeof *w);
  w->env = env;
  w->deferred = deferred;
  w->fd = fd;
  w->port = port;
  snprintf(w->host, sizeof w->host, "%s", host);
  int rc = uv_poll_init_socket(loop, &w->poll, fd);
  if (rc != 0) {
    free(w);
    napi_reject_deferred(env, deferred, errno_error(env, -rc, "uv_poll_init_socket", host));
    goto out;
  }
  w->poll.data = w;
  napi_value resource, name;
  napi_create_object(env, &resource);
  napi_create_string_utf8(env, "berth.sys.connectTcp", NAPI_AUTO_LENGTH, &name);
  napi_async_init(env, resource, name, &w->actx);
  napi_create_reference(env, resource, 1, &w->resource);
  rc = uv_poll_start(&w->poll, UV_WRITABLE, connect_writable);
  if (rc != 0) {
    w->err = -rc;
    uv_close((uv_handle_t *)&w->poll, connect_settled);
  }
out:
  free(host);
  return promise;
}

#define EXPORT(name, fn)                                   \
  do {                                                     \
    napi_value f;                                          \
    napi_create_function(env, name, NAPI_AUTO_LENGTH, fn, NULL, &f); \
    napi_set_named_property(env, exports, name, f);        \
  } while (0)

static napi_value init(napi_env env, napi_value exports) {
  EXPORT("mount", js_mount);
  EXPORT("umount2", js_umount);
  EXPORT("mknod", js_mknod);
  EXPORT("lsetxattr", js_lsetxattr);
  EXPORT("lgetxattr", js_lgetxattr);
  EXPORT("llistxattr", js_llistxattr);
  EXPORT("lremovexattr", js_lremovexattr);
  EXPORT("setChildSubreaper", js_set_child_subreaper);
  EXPORT("pidfdOpen", js_pidfd_open);
  EXPORT("waitid", js_waitid);
  EXPORT("pipe", js_pipe);
  EXPORT("dup", js_dup);
  EXPORT("listenUnix", js_listen_unix);
  EXPORT("receiveFd", js_receive_fd);
  EXPORT("setWinsize", js_set_winsize);
  EXPORT("setNonblocking", js_set_nonblocking);
  EXPORT("getWinsize", js_get_winsize);
  EXPORT("tcpSocketInNetns", js_tcp_socket_in_netns);
  EXPORT("connectTcp", js_connect_tcp);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
