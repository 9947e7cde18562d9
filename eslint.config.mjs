// Lint for every TS room. Room boundaries: code imports another room only through its src/index.ts,
// and the CLI never imports services (it talks to them over the socket or NATS).
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['node_modules/**', 'build/**', 'dist/**', 'bench/results/**', '.criu/**', '.carry/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    files: ['**/*.ts'],
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      '@typescript-eslint/consistent-type-imports': 'error',
      'no-restricted-syntax': ['error', { selector: 'TSEnumDeclaration', message: 'use a frozen const object + derived type (style.md)' }],
      'no-restricted-imports': ['error', {
        patterns: [{
          group: ['**/proto/src/*', '**/services/*/src/*', '**/cli/src/*', '!**/src/index.ts', '!**/src/index.js'],
          message: "import another room only through its src/index.ts",
        }],
      }],
    },
  },
  {
    files: ['cli/**/*.ts'],
    rules: {
      'no-restricted-imports': ['error', { patterns: [{ group: ['**/services/**'], message: 'the CLI never imports services' }] }],
    },
  },
);
