// Runs bench/local.ts from source through @swc/core (see test/fixtures/ingest-child.js).
'use strict';
require('../test/fixtures/ts-hook');
require('./local.ts');
