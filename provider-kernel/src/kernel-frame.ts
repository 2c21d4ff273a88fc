// Builds a tunnel KERNEL frame straight from a kernel message's parts, in ONE allocation:
//   0x02 ‖ kernel id (16 bytes) ‖ v1 frame (u64le count, u64le offsets, channel, parts…)
// protocol's encodeV1Parts + encodeKernelFrame would copy the message twice; output is the
// provider's hot path (10 MB of stdout, large display_data buffers), so we write the layout
// of docs/protocols.md here once and test it against the protocol's own decoders
// (kernel-frame.test.ts), which stay the single source of truth for reading it.
import type { Channel } from '@kinesis/protocol/jupyter/messages';
import { FrameKind, uuidToBytes } from '@kinesis/protocol/tunnel';
import type { WireParts } from './wire.ts';

export function kernelIdBytes(kernelId: string): Buffer {
  return uuidToBytes(kernelId);
}

export function kernelFrameFromParts(idBytes: Buffer, channel: Channel, p: WireParts, metadata: Uint8Array = p.metadata): Buffer {
  const parts: Uint8Array[] = [p.header, p.parent, metadata, p.content, ...p.buffers];
  const k = 2 + parts.length; // channel start, channel end, then the end of each part
  const tableLen = 8 * (k + 1);
  let total = 17 + tableLen + channel.length;
  for (const part of parts) total += part.byteLength;
  const out = Buffer.allocUnsafe(total);
  out[0] = FrameKind.Kernel;
  idBytes.copy(out, 1);
  // Offsets are relative to the v1 frame, which starts after the 17-byte tunnel header.
  let at = tableLen;
  out.writeBigUInt64LE(BigInt(k), 17);
  out.writeBigUInt64LE(BigInt(at), 17 + 8);
  out.write(channel, 17 + at, 'latin1');
  at += channel.length;
  out.writeBigUInt64LE(BigInt(at), 17 + 16);
  parts.forEach((part, i) => {
    out.set(part, 17 + at);
    at += part.byteLength;
    out.writeBigUInt64LE(BigInt(at), 17 + 8 * (i + 3));
  });
  return out;
}
