// The gateway ↔ provider tunnel. Spec and rationale: docs/protocols.md.
import { malformed, ProtocolError, tooBig } from './errors.ts';
import { ADDRESS_RE, HEX_RE, UUID_RE, arr, bool, int, isRecord, num, oneOf, optStr, record, str, stringMap, uintString } from './validate.ts';

export const TUNNEL_SUBPROTOCOL = 'kinesis.tunnel.v1';
export const TUNNEL_VERSION = 1;
export const TUNNEL_PATH = '/api/tunnel';
export const DEFAULT_MAX_TUNNEL_FRAME = 64 * 1024 * 1024;
export const MAX_CONTROL_BYTES = 1024 * 1024;
export const DEFAULT_INITIAL_CREDIT = 8 * 1024 * 1024;
/**
 * Most bytes of messages in parts a tunnel may have unfinished at once, counted by their
 * totals (docs/protocols.md, "Large output in parts"): the gateway holds the parts of every
 * unfinished message, so without it a provider could make it hold 64 MiB per kernel.
 * A gateway names its own in `welcome`; never less than its largest frame.
 */
export const DEFAULT_MAX_PARTIAL_BYTES = 256 * 1024 * 1024;

export const FrameKind = { Control: 0x01, Kernel: 0x02, Credit: 0x03, KernelPart: 0x04 } as const;

/**
 * Features a gateway names in `welcome`; a provider uses one only when its gateway named it.
 * - `kernel-parts`: a large kernel message may cross as KERNEL PART frames (docs/protocols.md),
 *   which the gateway forwards to clients as they arrive instead of after the whole message.
 * - `kernel-part-abort`: the provider may take back a message in parts it has begun
 *   (`kernel_part_abort`), so it can start sending large output while it still checks the
 *   kernel's signature on it, and withdraw it if the check fails.
 */
export const TUNNEL_FEATURES = ['kernel-parts', 'kernel-part-abort'] as const;
export type TunnelFeature = (typeof TUNNEL_FEATURES)[number];
/** Bytes of a KERNEL PART frame's header: kind, kernel id, total length, offset. */
export const KERNEL_PART_HEADER_BYTES = 33;

// ---- control messages -----------------------------------------------------------

export interface DeviceInfo {
  readonly kind: 'gpu' | 'cpu';
  readonly vendor: string;
  readonly name: string;
  readonly index: number;
  readonly memoryMiB: number;
  readonly powerLimitW?: number;
  readonly uuid?: string;
}

export interface HardwareInfo {
  readonly devices: readonly DeviceInfo[];
  readonly cpu: { readonly model: string; readonly cores: number };
  readonly memoryMiB: number;
  readonly os: string;
  readonly arch: string;
}

export interface KernelSpecFile {
  readonly argv: readonly string[];
  readonly display_name: string;
  readonly language: string;
  readonly interrupt_mode?: 'signal' | 'message';
  readonly env?: Readonly<Record<string, string>>;
  readonly metadata?: Readonly<Record<string, unknown>>;
}

export interface KernelSpecAd {
  readonly name: string;
  readonly spec: KernelSpecFile;
  /** File name → base64 contents (logos and the like), 256 KiB in all at most. */
  readonly resources: Readonly<Record<string, string>>;
}

export type RunningKernelStatus = 'starting' | 'idle' | 'busy' | 'restarting';

export interface RunningKernelAd {
  readonly kernelId: string;
  readonly specName: string;
  readonly status: RunningKernelStatus;
}

export interface Challenge { readonly type: 'challenge'; readonly version: number; readonly gatewayId: string; readonly nonce: string }
export interface Offer {
  readonly name: string;
  readonly hardware: HardwareInfo;
  /** Payment-token base units per kWh, as a decimal string. */
  readonly pricePerKwh: string;
  readonly kernelspecs: readonly KernelSpecAd[];
}
export interface Hello extends Offer {
  readonly type: 'hello';
  readonly version: number;
  readonly address: string;
  readonly signature: string;
  readonly kernels: readonly RunningKernelAd[];
}
export interface Advertise extends Offer { readonly type: 'advertise' }
export interface Welcome {
  readonly type: 'welcome';
  readonly providerId: string;
  readonly initialCredit: number;
  readonly features?: readonly TunnelFeature[];
  /** With `kernel-parts`: the most bytes (by their totals) of messages in parts unfinished at once; DEFAULT_MAX_PARTIAL_BYTES when absent. */
  readonly maxPartialBytes?: number;
}
export interface StartKernel { readonly type: 'start_kernel'; readonly id: number; readonly kernelId: string; readonly specName: string; readonly env: Readonly<Record<string, string>> }
export interface InterruptKernel { readonly type: 'interrupt_kernel'; readonly id: number; readonly kernelId: string }
export interface RestartKernel { readonly type: 'restart_kernel'; readonly id: number; readonly kernelId: string }
export interface ShutdownKernel { readonly type: 'shutdown_kernel'; readonly id: number; readonly kernelId: string }
export type Reply = { readonly type: 'reply'; readonly id: number; readonly ok: true } | { readonly type: 'reply'; readonly id: number; readonly ok: false; readonly error: string };
export interface KernelStatusEvent { readonly type: 'kernel_status'; readonly kernelId: string; readonly status: 'starting' | 'restarting' | 'dead'; readonly reason?: string }

export type KernelRequest = StartKernel | InterruptKernel | RestartKernel | ShutdownKernel;
/**
 * The usage receipt that closes a kernel's books (shut down or died): the energy since its
 * last execution, which no execute_reply carries (docs/metering.md). `receipt` is checked by
 * the gateway's ledger, which records a bad one as rejected rather than failing the tunnel.
 */
export interface KernelReceiptEvent { readonly type: 'kernel_receipt'; readonly kernelId: string; readonly receipt: unknown }
/**
 * The kernel's message in parts that is under way will not be finished: the gateway drops
 * what it has of it, and the kernel's next message in parts starts at offset 0
 * (docs/protocols.md, "Large output in parts"). Sent only to a gateway that offers
 * `kernel-part-abort`.
 */
export interface KernelPartAbortEvent { readonly type: 'kernel_part_abort'; readonly kernelId: string }

export type ControlMessage = Challenge | Hello | Welcome | KernelRequest | Reply | KernelStatusEvent | KernelReceiptEvent | KernelPartAbortEvent | Advertise;

export type TunnelFrame =
  | { readonly kind: 'control'; readonly message: ControlMessage }
  | { readonly kind: 'kernel'; readonly kernelId: string; readonly payload: Uint8Array }
  | { readonly kind: 'credit'; readonly kernelId: string; readonly bytes: number }
  /** `bytes` of a v1 frame of `total` bytes, starting at `offset` (docs/protocols.md, KERNEL PART). */
  | { readonly kind: 'kernel-part'; readonly kernelId: string; readonly total: number; readonly offset: number; readonly bytes: Buffer };

/** The text a provider signs (EIP-191 personal_sign) to prove its address to a gateway. */
export function authText(gatewayId: string, nonce: string): string {
  return `kinesis-tunnel-auth:v1:${gatewayId}:${nonce}`;
}

// Environment variables a client may pass to a kernel (besides KERNEL_*). Anything else
// from the client is dropped: a kernel on someone else's machine must not get, say,
// LD_PRELOAD or PATH from a stranger, nor the gateway's own environment.
export const ENV_ALLOW_LIST: readonly string[] = ['LANG', 'LC_ALL', 'LC_CTYPE', 'TZ', 'PYTHONHASHSEED', 'MPLBACKEND', 'JPY_SESSION_NAME', 'KINESIS_SESSION'];
const ENV_NAME_RE = /^[A-Za-z_][A-Za-z0-9_]{0,127}$/;

export function filterKernelEnv(env: unknown): Record<string, string> {
  const out: Record<string, string> = {};
  if (!isRecord(env)) return out;
  for (const [k, v] of Object.entries(env)) {
    if (typeof v !== 'string' || v.length > 4096 || !ENV_NAME_RE.test(k)) continue;
    if (k.startsWith('KERNEL_') || ENV_ALLOW_LIST.includes(k)) out[k] = v;
  }
  return out;
}

// ---- codec ------------------------------------------------------------------------

export function uuidToBytes(id: string): Buffer {
  if (!UUID_RE.test(id)) throw malformed('kernel id must be a UUID');
  return Buffer.from(id.replace(/-/g, ''), 'hex');
}

export function bytesToUuid(b: Uint8Array): string {
  const h = Buffer.from(b.buffer, b.byteOffset, 16).toString('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

export function encodeControl(msg: ControlMessage): Buffer {
  const json = Buffer.from(JSON.stringify(msg), 'utf8');
  if (json.length > MAX_CONTROL_BYTES) throw tooBig(json.length, MAX_CONTROL_BYTES);
  const out = Buffer.allocUnsafe(1 + json.length);
  out[0] = FrameKind.Control;
  json.copy(out, 1);
  return out;
}

/** 17-byte header + the v1 frame. One copy, into the outgoing buffer. */
export function encodeKernelFrame(kernelId: string, v1Payload: Uint8Array): Buffer {
  const out = Buffer.allocUnsafe(17 + v1Payload.byteLength);
  out[0] = FrameKind.Kernel;
  uuidToBytes(kernelId).copy(out, 1);
  out.set(v1Payload, 17);
  return out;
}

/**
 * The 33-byte header of a KERNEL PART frame; the part's bytes follow it in the same
 * WebSocket message (the provider sends header and bytes as two fragments of one message,
 * so the bytes are never copied into a new buffer).
 */
export function encodeKernelPartHeader(kernelIdBytes: Uint8Array, total: number, offset: number): Buffer {
  const out = Buffer.allocUnsafe(KERNEL_PART_HEADER_BYTES);
  out[0] = FrameKind.KernelPart;
  out.set(kernelIdBytes.subarray(0, 16), 1);
  out.writeBigUInt64LE(BigInt(total), 17);
  out.writeBigUInt64LE(BigInt(offset), 25);
  return out;
}

export function encodeCredit(kernelId: string, bytes: number): Buffer {
  const out = Buffer.allocUnsafe(21);
  out[0] = FrameKind.Credit;
  uuidToBytes(kernelId).copy(out, 1);
  out.writeUInt32BE(Math.max(0, Math.min(0xffffffff, Math.floor(bytes))), 17);
  return out;
}

export function decodeFrame(data: Uint8Array, opts: { maxBytes?: number } = {}): TunnelFrame {
  const max = opts.maxBytes ?? DEFAULT_MAX_TUNNEL_FRAME;
  if (data.byteLength > max) throw tooBig(data.byteLength, max);
  if (data.byteLength < 1) throw malformed('empty tunnel frame');
  const f = Buffer.isBuffer(data) ? data : Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  switch (f[0]) {
    case FrameKind.Control: {
      if (f.length - 1 > MAX_CONTROL_BYTES) throw tooBig(f.length - 1, MAX_CONTROL_BYTES);
      let v: unknown;
      try {
        v = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(f.subarray(1)));
      } catch (cause) {
        throw malformed('control frame is not valid UTF-8 JSON', cause);
      }
      return { kind: 'control', message: validateControl(v) };
    }
    case FrameKind.Kernel:
      if (f.length < 17) throw malformed('kernel frame shorter than its header');
      return { kind: 'kernel', kernelId: bytesToUuid(f.subarray(1, 17)), payload: f.subarray(17) };
    case FrameKind.Credit:
      if (f.length !== 21) throw malformed('credit frame must be 21 bytes');
      return { kind: 'credit', kernelId: bytesToUuid(f.subarray(1, 17)), bytes: f.readUInt32BE(17) };
    case FrameKind.KernelPart:
      return decodeKernelPart(f.subarray(0, KERNEL_PART_HEADER_BYTES), f.subarray(KERNEL_PART_HEADER_BYTES), opts);
    default:
      throw new ProtocolError(1003, `unknown tunnel frame kind ${f[0]}`);
  }
}

export type KernelPartFrame = Extract<TunnelFrame, { readonly kind: 'kernel-part' }>;

/**
 * A KERNEL PART frame given as its header (the first KERNEL_PART_HEADER_BYTES bytes) and its
 * bytes apart: a receiver that got them in separate WebSocket fragments need not join them.
 * The same checks as decodeFrame's.
 */
export function decodeKernelPart(head: Buffer, bytes: Buffer, opts: { maxBytes?: number } = {}): KernelPartFrame {
  return { kind: 'kernel-part', ...decodeKernelPartHead(head, bytes.length, opts), bytes };
}

/**
 * The header of a KERNEL PART frame whose `byteLength` bytes the receiver holds elsewhere (in
 * the pieces they arrived in, say): decodeKernelPart's checks without the bytes themselves.
 */
export function decodeKernelPartHead(head: Buffer, byteLength: number, opts: { maxBytes?: number } = {}): { readonly kernelId: string; readonly total: number; readonly offset: number } {
  const max = opts.maxBytes ?? DEFAULT_MAX_TUNNEL_FRAME;
  if (head.length + byteLength > max) throw tooBig(head.length + byteLength, max);
  if (head[0] !== FrameKind.KernelPart) throw malformed('not a kernel part frame');
  if (head.length !== KERNEL_PART_HEADER_BYTES || byteLength === 0) throw malformed('kernel part frame has no bytes');
  const total = head.readBigUInt64LE(17);
  const offset = head.readBigUInt64LE(25);
  // A message in parts is still one kernel message: `total` obeys the same bound as a frame.
  if (total > BigInt(max)) throw tooBig(Number(total), max);
  if (offset + BigInt(byteLength) > total) throw malformed('kernel part runs past the end of its message');
  return { kernelId: bytesToUuid(head.subarray(1, 17)), total: Number(total), offset: Number(offset) };
}

// ---- validators -------------------------------------------------------------------

const kernelId = (v: unknown): string => str(v, 'kernelId', { re: UUID_RE }).toLowerCase();
const reqId = (v: unknown): number => int(v, 'id', 0, 2 ** 31);
const NAME_RE = /^[A-Za-z0-9._-]{1,64}$/;

function validateDevice(v: unknown, i: number): DeviceInfo {
  const d = record(v, `hardware.devices[${i}]`);
  const powerLimitW = d['powerLimitW'] === undefined ? undefined : num(d['powerLimitW'], 'powerLimitW', 0, 100_000);
  const uuid = optStr(d['uuid'], 'uuid', { max: 128 });
  return {
    kind: oneOf(d['kind'], 'device.kind', ['gpu', 'cpu'] as const),
    vendor: str(d['vendor'], 'device.vendor', { max: 64 }),
    name: str(d['name'], 'device.name', { max: 128 }),
    index: int(d['index'], 'device.index', 0, 1024),
    memoryMiB: int(d['memoryMiB'], 'device.memoryMiB', 0, 1 << 30),
    ...(powerLimitW === undefined ? {} : { powerLimitW }),
    ...(uuid === undefined ? {} : { uuid }),
  };
}

export function validateHardware(v: unknown): HardwareInfo {
  const h = record(v, 'hardware');
  const cpu = record(h['cpu'], 'hardware.cpu');
  return {
    devices: arr(h['devices'], 'hardware.devices', 64).map(validateDevice),
    cpu: { model: str(cpu['model'], 'cpu.model', { max: 256 }), cores: int(cpu['cores'], 'cpu.cores', 1, 65536) },
    memoryMiB: int(h['memoryMiB'], 'hardware.memoryMiB', 0, 1 << 30),
    os: str(h['os'], 'hardware.os', { max: 64 }),
    arch: str(h['arch'], 'hardware.arch', { max: 64 }),
  };
}

export function validateKernelSpecFile(v: unknown, field = 'spec'): KernelSpecFile {
  const s = record(v, field);
  const argv = arr(s['argv'], `${field}.argv`, 256).map((a, i) => str(a, `${field}.argv[${i}]`, { max: 4096 }));
  if (argv.length === 0) throw malformed(`${field}.argv must not be empty`);
  const interrupt = s['interrupt_mode'];
  const metadata = s['metadata'];
  if (metadata !== undefined && !isRecord(metadata)) throw malformed(`${field}.metadata must be an object`);
  return {
    argv,
    display_name: str(s['display_name'], `${field}.display_name`, { max: 256, min: 1 }),
    language: str(s['language'], `${field}.language`, { max: 64, min: 1 }),
    ...(interrupt === undefined ? {} : { interrupt_mode: oneOf(interrupt, `${field}.interrupt_mode`, ['signal', 'message'] as const) }),
    ...(s['env'] === undefined ? {} : { env: stringMap(s['env'], `${field}.env`) }),
    ...(metadata === undefined ? {} : { metadata }),
  };
}

function validateSpecAd(v: unknown, i: number): KernelSpecAd {
  const k = record(v, `kernelspecs[${i}]`);
  const resources = stringMap(k['resources'] ?? {}, 'resources', 16);
  let total = 0;
  for (const [name, b64] of Object.entries(resources)) {
    if (!/^[A-Za-z0-9._-]{1,128}$/.test(name)) throw malformed('resource names must be plain file names');
    total += b64.length;
  }
  if (total > 350_000) throw malformed('kernelspec resources over 256 KiB');
  return { name: str(k['name'], 'kernelspec.name', { re: NAME_RE }), spec: validateKernelSpecFile(k['spec']), resources };
}

function validateOffer(m: Record<string, unknown>): Offer {
  return {
    name: str(m['name'], 'name', { max: 128 }),
    hardware: validateHardware(m['hardware']),
    pricePerKwh: uintString(m['pricePerKwh'], 'pricePerKwh'),
    kernelspecs: arr(m['kernelspecs'], 'kernelspecs', 64).map(validateSpecAd),
  };
}

export function validateControl(v: unknown): ControlMessage {
  const m = record(v, 'control message');
  const type = m['type'];
  switch (type) {
    case 'challenge':
      return { type, version: int(m['version'], 'version', 1, 1000), gatewayId: str(m['gatewayId'], 'gatewayId', { max: 128, min: 1 }), nonce: str(m['nonce'], 'nonce', { re: /^[0-9a-f]{64}$/ }) };
    case 'hello':
      return {
        type,
        version: int(m['version'], 'version', 1, 1000),
        address: str(m['address'], 'address', { re: ADDRESS_RE }),
        signature: str(m['signature'], 'signature', { re: HEX_RE, max: 200 }),
        kernels: arr(m['kernels'] ?? [], 'kernels', 4096).map((k) => {
          const r = record(k, 'kernel');
          return { kernelId: kernelId(r['kernelId']), specName: str(r['specName'], 'specName', { re: NAME_RE }), status: oneOf(r['status'], 'status', ['starting', 'idle', 'busy', 'restarting'] as const) };
        }),
        ...validateOffer(m),
      };
    case 'advertise':
      return { type, ...validateOffer(m) };
    case 'welcome':
      return {
        type,
        providerId: str(m['providerId'], 'providerId', { re: ADDRESS_RE }),
        initialCredit: int(m['initialCredit'], 'initialCredit', 1024, 0xffffffff),
        // Unknown feature names are ignored (a newer gateway may offer more), never an error.
        ...(m['features'] === undefined ? {} : { features: arr(m['features'], 'features', 64).filter((f): f is TunnelFeature => (TUNNEL_FEATURES as readonly unknown[]).includes(f)) }),
        ...(m['maxPartialBytes'] === undefined ? {} : { maxPartialBytes: int(m['maxPartialBytes'], 'maxPartialBytes', 1024 * 1024, 2 ** 40) }),
      };
    case 'start_kernel':
      return { type, id: reqId(m['id']), kernelId: kernelId(m['kernelId']), specName: str(m['specName'], 'specName', { re: NAME_RE }), env: filterKernelEnv(m['env']) };
    case 'interrupt_kernel':
    case 'restart_kernel':
    case 'shutdown_kernel':
      return { type, id: reqId(m['id']), kernelId: kernelId(m['kernelId']) };
    case 'reply':
      return bool(m['ok'], 'ok')
        ? { type, id: reqId(m['id']), ok: true }
        : { type, id: reqId(m['id']), ok: false, error: str(m['error'], 'error', { max: 4096 }) };
    case 'kernel_status': {
      const reason = optStr(m['reason'], 'reason', { max: 4096 });
      return { type, kernelId: kernelId(m['kernelId']), status: oneOf(m['status'], 'status', ['starting', 'restarting', 'dead'] as const), ...(reason === undefined ? {} : { reason }) };
    }
    case 'kernel_receipt': {
      // Bounded by MAX_CONTROL_BYTES; its fields are the ledger's to judge (receipt.ts).
      const receipt = m['receipt'];
      if (!isRecord(receipt)) throw malformed('receipt must be an object');
      return { type, kernelId: kernelId(m['kernelId']), receipt };
    }
    case 'kernel_part_abort':
      return { type, kernelId: kernelId(m['kernelId']) };
    default:
      throw malformed(`unknown control message type ${JSON.stringify(String(type)).slice(0, 64)}`);
  }
}
