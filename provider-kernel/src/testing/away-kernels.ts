// For tests of how a kernel's iopub is authenticated (kernel.ts, peer-check.ts): code a kernel
// runs to send a message signed with the wrong key, and kernelspec launchers (Python, run by
// /usr/bin/python3 with the connection file as argument) whose ipykernel is not in the
// launched process tree.

/** Sends one stream message signed with another key, then one signed right. */
export const MIXED_SIGNATURES = [
  'k = get_ipython().kernel',
  's = k.session',
  'key = s.key',
  "s.key = b'not the key'",
  "s.send(k.iopub_socket, 'stream', content={'name': 'stdout', 'text': 'signed with another key\\n'}, parent=k.get_parent())",
  's.key = key',
  "s.send(k.iopub_socket, 'stream', content={'name': 'stdout', 'text': 'signed right\\n'}, parent=k.get_parent())",
].join('\n');

/**
 * Starts ipykernel on the connection file `file` (a Python expression) in a process that is
 * re-parented away (a double fork), then stays up while it lives (the provider watches the
 * launcher) and takes it down on SIGTERM.
 */
function detachKernelThenWatch(file: string, before: readonly string[] = []): string {
  return [
    'import os, signal, subprocess, sys, time',
    ...before,
    'r, w = os.pipe()',
    'if os.fork() == 0:',
    '    os.setsid()',
    '    # ipykernel exits when its parent goes away if it is told who that is: here it must not.',
    "    env = {k: v for k, v in os.environ.items() if k != 'JPY_PARENT_PID'}",
    `    p = subprocess.Popen([sys.executable, '-m', 'ipykernel_launcher', '-f', ${file}], env=env)`,
    '    os.write(w, str(p.pid).encode())',
    '    os._exit(0)',
    'os.wait()',
    'kernel = int(os.read(r, 32))',
    'def stop(*_):',
    '    try: os.kill(kernel, signal.SIGKILL)',
    '    except ProcessLookupError: pass',
    '    os._exit(0)',
    'signal.signal(signal.SIGTERM, stop)',
    'while True:',
    '    try: os.kill(kernel, 0)',
    '    except ProcessLookupError: os._exit(0)',
    '    time.sleep(0.2)',
  ].join('\n');
}

/** ipykernel on the kernelspec's own ports, outside the launched tree (as an impostor on them would be). */
export function detachedLauncher(): string {
  return detachKernelThenWatch('sys.argv[1]');
}

/**
 * The launched process holds the kernel's five ports itself and relays them (as `ssh -L` or a
 * port forward would) to an ipykernel outside its tree on other ports.
 */
export function relayLauncher(): string {
  return detachKernelThenWatch('inner_file', [
    'import json, socket, threading',
    'PORTS = ("shell_port", "iopub_port", "stdin_port", "control_port", "hb_port")',
    'info = json.load(open(sys.argv[1]))',
    'listeners = {}',
    'for k in PORTS:',
    '    l = socket.socket(); l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)',
    '    l.bind((info["ip"], info[k])); l.listen(16); listeners[k] = l',
    'inner = dict(info)',
    'for k in PORTS:',
    '    t = socket.socket(); t.bind(("127.0.0.1", 0)); inner[k] = t.getsockname()[1]; t.close()',
    'inner_file = sys.argv[1] + ".inner.json"',
    'json.dump(inner, open(inner_file, "w"))',
    'def pump(a, b):',
    '    try:',
    '        while True:',
    '            d = a.recv(65536)',
    '            if not d: break',
    '            b.sendall(d)',
    '    except OSError: pass',
    '    for x in (a, b):',
    '        try: x.shutdown(socket.SHUT_RDWR)',
    '        except OSError: pass',
    'def serve(k):',
    '    while True:',
    '        c, _ = listeners[k].accept()',
    '        for _ in range(100):',
    '            try: u = socket.create_connection(("127.0.0.1", inner[k])); break',
    '            except OSError: time.sleep(0.1)',
    '        else: c.close(); continue',
    '        threading.Thread(target=pump, args=(c, u), daemon=True).start()',
    '        threading.Thread(target=pump, args=(u, c), daemon=True).start()',
    'for k in PORTS: threading.Thread(target=serve, args=(k,), daemon=True).start()',
  ]);
}
