// The gateway token. The page is opened as `/?token=T` (the URL `npm start` prints);
// the token moves to sessionStorage at once and leaves the address bar, so it never
// sits in history, a bookmark, a shared link or a Referer an output image could see.
const KEY = 'kinesis.token';

/** Reads `?token=` from the current URL (stripping it) or sessionStorage. */
export function takeToken(loc: Location = window.location, hist: History = window.history): string | undefined {
  const url = new URL(loc.href);
  const fromUrl = url.searchParams.get('token');
  if (fromUrl !== null) {
    url.searchParams.delete('token');
    hist.replaceState(hist.state, '', url.pathname + url.search + url.hash);
    if (fromUrl) sessionStorage.setItem(KEY, fromUrl);
  }
  return sessionStorage.getItem(KEY) ?? undefined;
}

export function storeToken(token: string): void {
  sessionStorage.setItem(KEY, token);
}

export function forgetToken(): void {
  sessionStorage.removeItem(KEY);
}
