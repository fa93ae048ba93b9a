#!/usr/bin/env node
'use strict';
// Writes dist/proto-tree.json: the parsed .proto tree (with proto.ts's fix-ups) and a hash
// of the files it came from. proto.ts loads it instead of parsing at every process start.
// Runs after tsc, from the compiled dist/proto.js, so the tree is exactly what the loader builds.
const fs = require('node:fs');
const path = require('node:path');
const { buildProtoTree, PROTO_TREE_FILE } = require('../dist/proto.js');

const tree = buildProtoTree();
const tmp = `${PROTO_TREE_FILE}.${process.pid}.tmp`;
fs.writeFileSync(tmp, JSON.stringify(tree));
fs.renameSync(tmp, PROTO_TREE_FILE);
process.stdout.write(`${path.relative(process.cwd(), PROTO_TREE_FILE)}: ${Object.keys(tree.root.nested ?? {}).length} top-level namespaces\n`);
