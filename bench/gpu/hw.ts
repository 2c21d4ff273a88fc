// What the provider would advertise on this machine: detectHardware() checked by the
// tunnel's own validator, as the gateway would check it.
import { detectHardware } from '../../provider-kernel/src/hardware.ts';
import { validateHardware } from '@kinesis/protocol/tunnel';

const log = (msg: string): void => console.log(msg);
const hw = await detectHardware({ logger: { info: log, warn: log, error: log, debug: () => {} } as never });
console.log(JSON.stringify(validateHardware(hw), null, 1));
