// Tests run the same swc transform as the build. NestJS 12 ships ESM only; Jest's CommonJS module system does not
// load ES modules on any Node version (Node's own require(esm), 20.19+ and 22.12+, is not what Jest uses), so those
// packages are transformed too.
const swc = ['@swc/jest', {
  jsc: {
    parser: { syntax: 'typescript', decorators: true },
    transform: { legacyDecorator: true, decoratorMetadata: true },
    target: 'es2023',
    keepClassNames: true,
  },
  module: { type: 'commonjs' },
  sourceMaps: 'inline',
}];
const esmPackages = ['@nestjs', 'file-type', 'load-esm', 'uid', 'strtok3', 'token-types', '@tokenizer', 'uint8array-extras', 'peek-readable', '@borewit', 'cookie'];
const common = {
  testEnvironment: 'node',
  transform: { '^.+\\.(t|m?j)s$': swc },
  transformIgnorePatterns: [`/node_modules/(?!(${esmPackages.join('|')})/)`],
  moduleNameMapper: { '^@spot/([a-z-]+)$': '<rootDir>/libs/$1/src/index.ts' },
  setupFiles: ['<rootDir>/test/support/setup-env.ts'],
};
module.exports = {
  testTimeout: 30000,
  projects: [
    {
      ...common,
      displayName: 'unit',
      testMatch: ['<rootDir>/apps/**/*.spec.ts', '<rootDir>/libs/**/*.spec.ts', '<rootDir>/test/support/**/*.spec.ts'],
    },
    {
      ...common,
      displayName: 'e2e',
      testMatch: ['<rootDir>/test/**/*.e2e-spec.ts', '<rootDir>/test/**/*.int-spec.ts'],
      testPathIgnorePatterns: ['/node_modules/', '<rootDir>/test/browser/'],
      globalSetup: '<rootDir>/test/support/global-setup.ts',
      testTimeout: 30000,
    },
    // its own project so that only runs which include a browser test find (or install) Chromium
    {
      ...common,
      displayName: 'browser',
      testMatch: ['<rootDir>/test/browser/**/*.e2e-spec.ts'],
      globalSetup: '<rootDir>/test/support/browser-global-setup.ts',
      testTimeout: 30000,
    },
  ],
};
