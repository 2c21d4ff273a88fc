// Builds the browser IDE: root ide/, output ide/dist (served by the gateway's static
// routes). `npm run dev` serves it with hot reload and proxies the Jupyter API
// (/api, including the kernel WebSocket channels) to the gateway named by
// KINESIS_GATEWAY_URL (default http://127.0.0.1:8888).
import { defineConfig } from 'vite';
import solid from 'vite-plugin-solid';

const gateway = process.env.KINESIS_GATEWAY_URL ?? 'http://127.0.0.1:8888';

export default defineConfig({
  root: 'ide',
  plugins: [solid()],
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    target: 'es2022',
    // Monaco alone is a few MB; it is one cached, immutable asset.
    chunkSizeWarningLimit: 8000,
    sourcemap: false,
  },
  worker: { format: 'es' },
  server: {
    proxy: {
      '/api': { target: gateway, ws: true, changeOrigin: true },
    },
  },
});
