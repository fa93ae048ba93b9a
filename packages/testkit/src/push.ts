import type { BuiltImage, Descriptor } from './images';

/** Credentials for pushing to a registry that wants them (htpasswd or a token server). */
export interface PushAuth {
  username: string;
  password: string;
}

/**
 * Answers a 401 the way a registry client must: basic credentials for a Basic challenge,
 * a token from the realm (scope repository:<repo>:pull,push) for a Bearer one.
 */
async function authorization(res: Response, repo: string, auth: PushAuth | undefined): Promise<string> {
  const challenge = res.headers.get('www-authenticate') ?? '';
  if (!auth) throw new Error(`registry wants credentials (${challenge}) and none were given`);
  const basic = `Basic ${Buffer.from(`${auth.username}:${auth.password}`).toString('base64')}`;
  if (/^basic/i.test(challenge)) return basic;
  const param = (k: string) => new RegExp(`${k}="([^"]*)"`).exec(challenge)?.[1];
  const realm = param('realm');
  if (!realm) throw new Error(`cannot answer challenge ${challenge}`);
  const url = new URL(realm);
  const service = param('service');
  if (service) url.searchParams.set('service', service);
  url.searchParams.set('scope', `repository:${repo}:pull,push`);
  const t = await fetch(url, { headers: { authorization: basic } });
  if (!t.ok) throw new Error(`token server: ${t.status} ${await t.text()}`);
  const body = (await t.json()) as { token?: string; access_token?: string };
  return `Bearer ${body.token ?? body.access_token}`;
}

/**
 * Pushes a built image (every blob, the manifests, then the target under `tag`) with plain
 * HTTP calls of the distribution API, independent of the code under test.
 */
export async function pushToRegistry(
  registryUrl: string,
  repo: string,
  tag: string,
  image: Pick<BuiltImage, 'blobs' | 'manifests' | 'target' | 'index'>,
  auth?: PushAuth,
): Promise<void> {
  let authz: string | undefined;
  const call = async (url: string | URL, init: RequestInit): Promise<Response> => {
    for (let i = 0; ; i++) {
      const headers = {
        ...(init.headers as Record<string, string>),
        ...(authz ? { authorization: authz } : {}),
      };
      const res = await fetch(url, { ...init, headers });
      if (res.status !== 401 || i > 0) return res;
      await res.arrayBuffer();
      authz = await authorization(res, repo, auth);
    }
  };
  const manifestDigests = new Set(image.manifests.map((m) => m.digest));
  if (image.index) manifestDigests.add(image.index.digest);
  for (const [digest, data] of image.blobs) {
    if (manifestDigests.has(digest)) continue;
    const start = await call(`${registryUrl}/v2/${repo}/blobs/uploads/`, { method: 'POST' });
    if (start.status !== 202) throw new Error(`upload start: ${start.status} ${await start.text()}`);
    const loc = new URL(start.headers.get('location')!, registryUrl);
    loc.searchParams.set('digest', digest);
    const put = await call(loc, {
      method: 'PUT',
      headers: { 'content-type': 'application/octet-stream' },
      body: data,
    });
    if (put.status !== 201) throw new Error(`upload ${digest}: ${put.status} ${await put.text()}`);
  }
  const putManifest = async (d: Descriptor, ref: string) => {
    const res = await call(`${registryUrl}/v2/${repo}/manifests/${ref}`, {
      method: 'PUT',
      headers: { 'content-type': d.mediaType },
      body: image.blobs.get(d.digest)!,
    });
    if (res.status !== 201) throw new Error(`manifest ${ref}: ${res.status} ${await res.text()}`);
  };
  for (const m of image.manifests) if (m.digest !== image.target.digest) await putManifest(m, m.digest);
  await putManifest(image.target, tag);
}
