// Vite-specific imports used by the IDE.
declare module '*?worker' {
  const WorkerCtor: new () => Worker;
  export default WorkerCtor;
}
declare module '*.css';
