import { defineConfig } from 'vitest/config';
import react from '@vitejs/plugin-react';

// In production the Rust server serves dist/ and the API on one origin; in dev the
// same relative URLs reach a local server through this proxy (REST and WebSocket).
const apiTarget = process.env.APEX_URL ?? 'http://127.0.0.1:8080';

export default defineConfig({
  plugins: [react()],
  server: {
    proxy: {
      '/api': { target: apiTarget, ws: true, changeOrigin: true },
    },
  },
  build: {
    outDir: 'dist',
    sourcemap: false,
    chunkSizeWarningLimit: 1024,
  },
  test: {
    include: ['src/**/*.test.ts'],
    environment: 'node',
  },
});
