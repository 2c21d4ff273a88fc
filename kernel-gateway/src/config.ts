// Every knob of the gateway with its default. Times in ms unless the name says otherwise;
// culling keeps Jupyter's names and units (seconds).
import { DEFAULT_INITIAL_CREDIT, DEFAULT_MAX_PARTIAL_BYTES, DEFAULT_MAX_TUNNEL_FRAME } from '@kinesis/protocol/tunnel';

export interface Tuning {
  /** Credit each kernel starts with on a tunnel (docs/protocols.md "Flow control"). */
  readonly initialCredit: number;
  /** Bytes owed to a kernel before a CREDIT frame goes back (at most half of `initialCredit`). */
  readonly creditBatchBytes: number;
  readonly maxTunnelFrameBytes: number;
  /**
   * Most bytes (by their totals) of messages in parts a tunnel may have unfinished at once;
   * named to providers in `welcome`, 1009 above it. Never less than `maxTunnelFrameBytes`.
   */
  readonly maxPartialBytes: number;
  /** Largest client WebSocket message; above it the socket closes with 1009. */
  readonly maxClientFrameBytes: number;
  readonly maxBodyBytes: number;
  readonly providerPingIntervalMs: number;
  readonly providerPingTimeoutMs: number;
  readonly handshakeTimeoutMs: number;
  /** Tunnels at most in their handshake at once; more are refused with 503 until some finish. */
  readonly maxPendingTunnels: number;
  /** How long a disconnected provider's kernels wait before they are `dead`. */
  readonly graceMs: number;
  /** How long kernels restored after a gateway restart wait for their provider to reconnect. */
  readonly restoreGraceMs: number;
  readonly startTimeoutMs: number;
  readonly restartTimeoutMs: number;
  readonly requestTimeoutMs: number;
  /** No REST call waits longer than this (the issue: never past 40 s). */
  readonly maxRestWaitMs: number;
  /** WebSocket pings to clients keep idle connections (and proxies) alive; a client silent for one interval is dropped. */
  readonly clientPingIntervalMs: number;
  readonly pendingMaxBytes: number;
  readonly maxDetachedSessions: number;
  /** Output kept for a disconnected session is forgotten after this long. */
  readonly detachedTtlMs: number;
  readonly clientHighWaterBytes: number;
  readonly clientMaxBufferedBytes: number;
}

export const DEFAULT_TUNING: Tuning = {
  initialCredit: DEFAULT_INITIAL_CREDIT,
  creditBatchBytes: 1024 * 1024,
  maxTunnelFrameBytes: DEFAULT_MAX_TUNNEL_FRAME,
  maxPartialBytes: DEFAULT_MAX_PARTIAL_BYTES,
  maxClientFrameBytes: 64 * 1024 * 1024,
  maxBodyBytes: 16 * 1024 * 1024,
  providerPingIntervalMs: 5_000,
  providerPingTimeoutMs: 10_000,
  handshakeTimeoutMs: 10_000,
  maxPendingTunnels: 256,
  graceMs: 5_000,
  // Above two of a provider's longest reconnect waits (30 s ± 50 %) plus a handshake.
  restoreGraceMs: 120_000,
  startTimeoutMs: 120_000,
  restartTimeoutMs: 60_000,
  requestTimeoutMs: 30_000,
  maxRestWaitMs: 38_000,
  clientPingIntervalMs: 30_000,
  pendingMaxBytes: 64 * 1024 * 1024,
  maxDetachedSessions: 8,
  detachedTtlMs: 15 * 60_000,
  clientHighWaterBytes: 4 * 1024 * 1024,
  clientMaxBufferedBytes: 64 * 1024 * 1024,
};

/** Default bytes of output kept per disconnected client session. */
export const DEFAULT_BUFFER_BYTES = 16 * 1024 * 1024;
