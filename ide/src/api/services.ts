// One place that knows how to reach the gateway: @jupyterlab/services managers
// built on settings whose baseUrl is this page's origin. REST calls carry the token
// in the Authorization header; WebSockets cannot set headers, so the kernel
// channels URL carries `?token=` (to the gateway only: nothing a kernel can read), and
// `kinesis_last_msg_id` so a dropped connection resumes without losing output.
import { ContentsManager, KernelManager, KernelSpecManager, ServerConnection, SessionManager } from '@jupyterlab/services';
import { resumingWebSocket } from './resuming-socket.ts';

export interface Services {
  readonly settings: ServerConnection.ISettings;
  readonly contents: ContentsManager;
  readonly kernelspecs: KernelSpecManager;
  readonly kernels: KernelManager;
  readonly sessions: SessionManager;
  dispose(): void;
}

export function createServices(token: string, origin = window.location.origin): Services {
  const settings = ServerConnection.makeSettings({
    baseUrl: `${origin}/`,
    wsUrl: `${origin.replace(/^http/, 'ws')}/`,
    token,
    appendToken: true,
    init: { cache: 'no-store', credentials: 'omit' },
    // Kernel connections resume exactly where a dropped network left them (resuming-socket.ts).
    WebSocket: resumingWebSocket(),
  });
  const contents = new ContentsManager({ serverSettings: settings });
  const kernelspecs = new KernelSpecManager({ serverSettings: settings });
  const kernels = new KernelManager({ serverSettings: settings });
  const sessions = new SessionManager({ serverSettings: settings, kernelManager: kernels });
  let disposed = false;
  return {
    settings, contents, kernelspecs, kernels, sessions,
    dispose() {
      if (disposed) return;
      disposed = true;
      sessions.dispose();
      kernels.dispose();
      kernelspecs.dispose();
      contents.dispose();
    },
  };
}

/** A readable message from anything @jupyterlab/services throws. */
export function errorMessage(err: unknown): string {
  if (err instanceof ServerConnection.ResponseError) {
    const status = err.response.status;
    return `${err.message}${status ? ` (HTTP ${status})` : ''}`;
  }
  if (err instanceof Error) return err.message;
  return String(err);
}
