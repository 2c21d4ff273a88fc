// The tunnel handshake (docs/protocols.md "Handshake and identity"): challenge → hello
// (EIP-191 personal_sign over authText) → welcome. Anything else closes with 4400/4401, a bad
// frame with its ProtocolError close code, silence with 4408 after `timeoutMs`.
import { randomBytes } from 'node:crypto';
import { getAddress, verifyMessage } from 'ethers';
import { authText, decodeFrame, encodeControl, MAX_CONTROL_BYTES, ProtocolError, TUNNEL_VERSION, type Hello } from '@kinesis/protocol';
import type { Logger } from '../logger.ts';
import { joinFragments, type Pieces, type TunnelSocket } from './tunnel-socket.ts';

export const CLOSE_MALFORMED_HELLO = 4400;
export const CLOSE_BAD_SIGNATURE = 4401;
export const CLOSE_HANDSHAKE_TIMEOUT = 4408;
export const CLOSE_REPLACED = 4409;

export interface HandshakeOptions {
  readonly gatewayId: string;
  readonly timeoutMs: number;
  readonly logger: Logger;
}

/** Resolves with the verified hello (address checksummed), or undefined after closing the socket. */
export function handshake(ws: TunnelSocket, opts: HandshakeOptions): Promise<Hello | undefined> {
  const nonce = randomBytes(32).toString('hex');
  // Until it has proved who it is, a peer may send nothing larger than a hello.
  const maxPayload = ws.maxPayload;
  ws.maxPayload = Math.min(maxPayload, MAX_CONTROL_BYTES + 1);
  return new Promise((resolve) => {
    let done = false;
    const finish = (hello: Hello | undefined, close?: [number, string]): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      ws.maxPayload = maxPayload;
      ws.off('message', onMessage);
      ws.off('close', onClose);
      if (close) {
        opts.logger.warn('tunnel handshake failed', { code: close[0], reason: close[1] });
        try {
          ws.close(close[0], close[1]);
        } catch {
          ws.terminate();
        }
        setTimeout(() => ws.terminate(), 2000).unref();
      }
      resolve(hello);
    };
    const timer = setTimeout(() => finish(undefined, [CLOSE_HANDSHAKE_TIMEOUT, 'no hello in time']), opts.timeoutMs);
    const onClose = (): void => finish(undefined);
    const onMessage = (fragments: Pieces[], isBinary: boolean): void => {
      if (!isBinary) return finish(undefined, [1003, 'text frames are not part of the tunnel protocol']);
      let hello: Hello;
      try {
        const f = decodeFrame(joinFragments(fragments), { maxBytes: MAX_CONTROL_BYTES + 1 });
        if (f.kind !== 'control' || f.message.type !== 'hello') return finish(undefined, [CLOSE_MALFORMED_HELLO, 'expected hello']);
        hello = f.message;
      } catch (err) {
        if (err instanceof ProtocolError) {
          // Oversized or undecodable: the frame's own close code; a hello that fails validation: 4400.
          const code = err.closeCode === 1009 ? 1009 : CLOSE_MALFORMED_HELLO;
          return finish(undefined, [code, err.shortMessage.slice(0, 120)]);
        }
        return finish(undefined, [CLOSE_MALFORMED_HELLO, 'malformed hello']);
      }
      if (hello.version !== TUNNEL_VERSION) return finish(undefined, [CLOSE_MALFORMED_HELLO, `unsupported tunnel version ${hello.version}`]);
      let address: string;
      try {
        // All lower (or upper) case is a plain address; mixed case must carry a valid EIP-55 checksum.
        address = getAddress(hello.address);
      } catch {
        return finish(undefined, [CLOSE_MALFORMED_HELLO, 'address has a bad EIP-55 checksum']);
      }
      let signer: string;
      try {
        signer = verifyMessage(authText(opts.gatewayId, nonce), hello.signature);
      } catch {
        return finish(undefined, [CLOSE_BAD_SIGNATURE, 'signature does not verify']);
      }
      if (signer !== address) return finish(undefined, [CLOSE_BAD_SIGNATURE, 'signature does not match the address']);
      finish({ ...hello, address });
    };
    ws.on('message', onMessage);
    ws.on('close', onClose);
    ws.send(encodeControl({ type: 'challenge', version: TUNNEL_VERSION, gatewayId: opts.gatewayId, nonce }), { binary: true });
  });
}
