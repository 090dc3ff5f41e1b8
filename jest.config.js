// Projects: unit (pure logic, no I/O), integration (real PostgreSQL, real HTTP), e2e (a
// browser), and integration-replication: the event pipeline's integration tests again, plus
// test/replication/, with EVENT_SOURCE=replication on a server with wal_level=logical.
// Sources are ESM TypeScript, transformed by SWC; jest runs with --experimental-vm-modules.
const transform = {
  '^.+\\.ts$': [
    '@swc/jest',
    {
      jsc: { target: 'es2022', parser: { syntax: 'typescript' } },
      module: { type: 'es6' },
      sourceMaps: 'inline',
    },
  ],
}
const common = {
  testEnvironment: 'node',
  extensionsToTreatAsEsm: ['.ts'],
  moduleNameMapper: { '^(\\.{1,2}/.*)\\.js$': '$1' },
  transform,
}

export default {
  // Integration tests wait for events with their own bounded timeouts; this is the backstop.
  testTimeout: 30000,
  projects: [
    { ...common, displayName: 'unit', testMatch: ['<rootDir>/test/unit/**/*.test.ts'] },
    {
      ...common,
      displayName: 'integration',
      testMatch: ['<rootDir>/test/integration/**/*.test.ts'],
      globalSetup: '<rootDir>/test/helpers/global-setup.mjs',
      globalTeardown: '<rootDir>/test/helpers/global-teardown.mjs',
    },
    {
      ...common,
      displayName: 'integration-replication',
      testMatch: [
        '<rootDir>/test/integration/{sse,resume,listener-outage,multi-instance,slow-client}.test.ts',
        '<rootDir>/test/replication/**/*.test.ts',
      ],
      setupFiles: ['<rootDir>/test/helpers/replication-env.ts'],
      globalSetup: '<rootDir>/test/helpers/replication-server.mjs',
      globalTeardown: '<rootDir>/test/helpers/replication-server-teardown.mjs',
    },
    {
      ...common,
      displayName: 'e2e',
      testMatch: ['<rootDir>/test/e2e/**/*.test.ts'],
      globalSetup: '<rootDir>/test/helpers/global-setup.mjs',
      globalTeardown: '<rootDir>/test/helpers/global-teardown.mjs',
    },
  ],
}
