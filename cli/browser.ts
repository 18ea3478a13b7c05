import { spawn } from 'node:child_process';
import type { Env } from './aws.ts';

/**
 * Opens `url` in the system browser: `$BROWSER` when set (the convention of xdg-utils and Python's webbrowser),
 * else the platform's opener. Settles once the opener started; whether a browser appeared is the operator's to see,
 * which is why the URL is printed as well.
 */
export function openBrowser(url: string, env: Env, platform: NodeJS.Platform = process.platform): Promise<void> {
  const [command, ...args] =
    env.BROWSER !== undefined && env.BROWSER !== ''
      ? [env.BROWSER, url]
      : platform === 'darwin'
        ? ['open', url]
        : platform === 'win32'
          ? // `start` would split the URL at its "&"s; the URL handler takes it whole.
            ['rundll32', 'url.dll,FileProtocolHandler', url]
          : ['xdg-open', url];
  return new Promise((resolve, reject) => {
    const child = spawn(command as string, args, { stdio: 'ignore', detached: true, env: { ...env } });
    child.once('error', reject);
    child.once('spawn', () => {
      child.unref();
      resolve();
    });
  });
}
