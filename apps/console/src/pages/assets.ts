import { createHash } from 'node:crypto';

/**
 * The console's stylesheet and script, served from /assets (never inline: the Content-Security-Policy allows
 * scripts and styles from 'self' only). Their URLs carry a hash of the content, so they are cached for good.
 */
const CSS = `body{font:15px/1.5 system-ui,sans-serif;margin:0;color:#1d2433;background:#f7f8fa}
header{background:#1d2433;color:#fff;padding:.6rem 1.5rem;display:flex;gap:1.5rem;align-items:center;flex-wrap:wrap}
header a{color:#fff}header nav{display:flex;gap:1rem;flex-wrap:wrap}header form{margin:0 0 0 auto}
main{max-width:64rem;margin:1.5rem auto;padding:0 1.5rem}
table{border-collapse:collapse;width:100%;background:#fff}th,td{text-align:left;padding:.45rem .6rem;border-bottom:1px solid #e3e6ec;vertical-align:top}
fieldset{border:1px solid #d5dae3;background:#fff;margin:1rem 0;padding:1rem}label{display:block;margin:.4rem 0 .15rem;font-weight:600}
input[type=text],input[type=number],select{padding:.35rem;border:1px solid #b8bfcc;border-radius:4px;min-width:16rem}
button,.button{background:#2456d6;color:#fff;border:0;border-radius:4px;padding:.45rem .9rem;cursor:pointer;font:inherit;text-decoration:none;display:inline-block}
button.danger{background:#b42318}.muted{color:#5b6578}.notice{background:#fff6d6;border:1px solid #e9c46a;padding:.8rem 1rem}
.error{background:#fde8e8;border:1px solid #e3a0a0;padding:.8rem 1rem}code,pre{background:#eef1f6;padding:.1rem .3rem;border-radius:3px}
pre{padding:.8rem;overflow:auto}.secret{font-size:1.1rem;word-break:break-all}.badge{font-size:.8rem;padding:.05rem .4rem;border-radius:3px;background:#e3e6ec}
.sr-only{position:absolute;width:1px;height:1px;overflow:hidden;clip:rect(0 0 0 0);white-space:nowrap}
.skip{position:absolute;left:-999px}.skip:focus{left:1rem;top:.5rem;background:#fff;padding:.3rem .6rem;z-index:1}
.demo{background:#ffe08a;color:#1d2433;padding:.1rem .5rem;border-radius:3px;font-weight:700}
.check{font-weight:400}.inline{display:inline}a.button.danger{background:#b42318}.chart{max-width:720px;background:#fff}
progress{width:6rem;vertical-align:middle}.meta{margin:.3rem 0 0;font-size:.85rem}.meta dt{display:inline;color:#5b6578}.meta dt::after{content:': '}.meta dd{display:inline;margin:0}.meta dd::after{content:'';display:block}
`;

/**
 * Progressive enhancement only: every page works without it. The copy button of a new key, the confirm
 * question of forms with `data-confirm`, and `data-back` links that go back in history.
 */
const JS = `'use strict';
document.addEventListener('DOMContentLoaded', () => {
  const copy = document.getElementById('copy');
  const key = document.getElementById('new-key');
  if (copy && key) {
    copy.hidden = false;
    copy.addEventListener('click', () => navigator.clipboard.writeText(key.value).then(() => { copy.textContent = 'Copied'; }));
  }
  for (const link of document.querySelectorAll('a[data-back]')) {
    link.addEventListener('click', (event) => {
      if (history.length > 1) { event.preventDefault(); history.back(); }
    });
  }
});
document.addEventListener('submit', (event) => {
  const question = event.target instanceof HTMLFormElement ? event.target.dataset.confirm : undefined;
  if (question && !window.confirm(question)) event.preventDefault();
});
`;

/** One served asset: its body, type and content-hashed URL. */
export interface Asset {
  url: string;
  path: string;
  type: string;
  body: string;
}

function asset(name: string, type: string, body: string): Asset {
  const version = createHash('sha256').update(body).digest('hex').slice(0, 12);
  return { url: `/assets/${name}?v=${version}`, path: `/assets/${name}`, type, body };
}

export const ASSETS = {
  css: asset('console.css', 'text/css; charset=utf-8', CSS),
  js: asset('console.js', 'text/javascript; charset=utf-8', JS),
} as const;
