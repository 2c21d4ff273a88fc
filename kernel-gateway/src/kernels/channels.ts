// /api/kernels/{id}/channels: one client WebSocket, either framing (docs/protocols.md).
// v1 frames go to the provider as they came (17-byte tunnel header in front); legacy frames
// are converted to v1 once. A frame that breaks its framing closes this socket only, with the
// ProtocolError's code: 1003 (wrong frame type), 1007 (malformed), 1009 (too big; ws itself
// enforces maxPayload).
import type { Duplex } from 'node:stream';
import type { WebSocket } from 'ws';
import { legacyToV1, peekV1, ProtocolError } from '@kinesis/protocol';
import { errorText, type Logger } from '../logger.ts';
import { ClientConnection } from './client.ts';
import type { Kernel } from './kernel.ts';

export interface ChannelOptions {
  readonly maxFrameBytes: number;
  readonly logger: Logger;
}

export function acceptChannel(ws: WebSocket, kernel: Kernel, sessionId: string, v1: boolean, opts: ChannelOptions, socket?: Duplex, resumeAfter?: string): ClientConnection {
  const conn = new ClientConnection(ws, sessionId, v1, socket, resumeAfter);
  ws.on('pong', () => {
    conn.alive = true;
  });
  // The server runs with autoPong off: a pong must not cut into a frame being streamed.
  ws.on('ping', (data: Buffer) => conn.pong(data));
  ws.on('error', (err) => opts.logger.debug('client socket error', { kernel: kernel.id, error: err.message }));
  ws.on('close', () => kernel.detach(conn));
  ws.on('message', (data: Buffer, isBinary: boolean) => {
    let frame: Buffer;
    try {
      if (v1) {
        if (!isBinary) throw new ProtocolError(1003, 'the v1 kernel protocol sends binary frames only');
        frame = data;
      } else {
        frame = legacyToV1(isBinary ? data : data.toString('utf8'), { maxBytes: opts.maxFrameBytes });
      }
      const peek = peekV1(frame, { maxBytes: opts.maxFrameBytes });
      if (peek.channel === 'iopub') {
        // Clients do not publish; Jupyter Server ignores such messages too.
        opts.logger.debug('client sent a message on iopub; ignored', { kernel: kernel.id });
        return;
      }
    } catch (err) {
      if (err instanceof ProtocolError) {
        opts.logger.info('closing a client that sent a bad frame', { kernel: kernel.id, code: err.closeCode, error: err.shortMessage });
        conn.closeAfterFrame(err.closeCode, err.shortMessage.slice(0, 120));
        return;
      }
      opts.logger.error('error handling a client frame', { kernel: kernel.id, error: errorText(err) });
      return;
    }
    const r = kernel.fromClient(frame);
    if (r === 'full') conn.close(1013, 'kernel not ready and its send queue is full; try again later');
    // Backpressure: while the provider's tunnel is backed up, this client is not read (TCP
    // then slows the client down) instead of the gateway holding what it sends.
    const link = kernel.link;
    if (link?.congested && !conn.held) {
      conn.held = true;
      ws.pause();
      link.whenDrained(() => {
        conn.held = false;
        conn.alive = true;
        ws.resume();
      });
    }
  });
  kernel.attach(conn);
  return conn;
}
