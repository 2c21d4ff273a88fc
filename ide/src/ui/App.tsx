// The shell: asks for the gateway token if the page was opened without one, then
// routes between the file browser (/tree) and a notebook (/notebooks/<path>).
import { Match, Switch, createSignal, onCleanup } from 'solid-js';
import type { JSX } from 'solid-js';
import { storeToken, takeToken } from '../api/auth.ts';
import { route } from '../api/route.ts';
import { createServices } from '../api/services.ts';
import type { Services } from '../api/services.ts';
import { FileBrowser } from './FileBrowser.tsx';
import { NotebookPage } from './NotebookPage.tsx';

export function App(): JSX.Element {
  const [token, setToken] = createSignal(takeToken());
  return (
    <Switch>
      <Match when={!token()}>
        <Login onToken={(t) => { storeToken(t); setToken(t); }} />
      </Match>
      <Match when={token()}>{(t) => <Main token={t()} />}</Match>
    </Switch>
  );
}

function Main(props: { token: string }): JSX.Element {
  const services: Services = createServices(props.token);
  onCleanup(() => services.dispose());
  return (
    <Switch>
      <Match when={route().kind === 'notebook' && route()}>
        {(r) => <NotebookPage services={services} path={r().path} />}
      </Match>
      <Match when={route().kind === 'tree'}>
        <div class="tree-page">
          <header class="nb-header"><span class="home">Kinesis</span></header>
          <FileBrowser services={services} path={route().path} />
        </div>
      </Match>
    </Switch>
  );
}

function Login(props: { onToken: (t: string) => void }): JSX.Element {
  let input!: HTMLInputElement;
  return (
    <form class="login" onSubmit={(e) => { e.preventDefault(); if (input.value.trim()) props.onToken(input.value.trim()); }}>
      <h1>Kinesis</h1>
      <p>Open the URL that <code>npm start</code> printed, or paste its token:</p>
      <input ref={input} type="password" aria-label="token" autocomplete="off" />
      <button type="submit">Open</button>
    </form>
  );
}
