// One jest run over every package: tests import workspace packages from src/
// (no build needed for unit tests); end-to-end tests spawn bin/berthd, which runs dist/.
/** @type {import('jest').Config} */
module.exports = {
  testEnvironment: 'node',
  roots: ['<rootDir>/packages', '<rootDir>/examples'],
  testMatch: ['**/test/**/*.test.ts'],
  transform: { '^.+\\.ts$': ['@swc/jest', { jsc: { target: 'es2022', parser: { syntax: 'typescript' } } }] },
  moduleNameMapper: {
    '^@berth/([a-z-]+)/testing$': '<rootDir>/packages/$1/src/testing/index.ts',
    '^@berth/api/time$': '<rootDir>/packages/api/src/time.ts',
    '^@berth/([a-z-]+)$': '<rootDir>/packages/$1/src/index.ts',
  },
  testPathIgnorePatterns: ['/node_modules/', '/dist/'],
  testTimeout: 60000,
  reporters: ['default', '<rootDir>/scripts/jest-summary-reporter.js'],
};
