import { render } from 'solid-js/web';
import 'katex/dist/katex.min.css';
import './styles.css';
import { App } from './ui/App.tsx';

render(() => <App />, document.getElementById('app') as HTMLElement);
