// Downloads text as a file through a blob: URL (no server round trip, no token in any URL).
export function downloadText(name: string, text: string, mime = 'application/x-ipynb+json'): void {
  const url = URL.createObjectURL(new Blob([text], { type: mime }));
  const a = document.createElement('a');
  a.href = url;
  a.download = name;
  a.rel = 'noopener';
  document.body.appendChild(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}
