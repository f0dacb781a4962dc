/** The placeholder home page until GitHub sign-in, orgs and keys pages land. Static: nothing user-supplied. */
export const HOME_PAGE = `<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>spotinference console</title>
  <style>
    body { font: 16px/1.5 system-ui, sans-serif; max-width: 44rem; margin: 3rem auto; padding: 0 1rem; color: #1d1d1f; }
    pre { background: #f4f4f5; padding: 0.75rem 1rem; border-radius: 6px; overflow-x: auto; }
    code { font-family: ui-monospace, SFMono-Regular, Menlo, monospace; font-size: 0.9em; }
  </style>
</head>
<body>
  <h1>spotinference console</h1>
  <p>The console is coming soon: sign in with GitHub, manage your orgs and API keys, and follow usage and bills here.</p>
  <h2>Until then: mint a key with the CLI</h2>
  <pre><code>npm run cli -- org create acme --name "Acme Inc"
npm run cli -- key create --org acme --name laptop --models llama-3.1-8b --expires-in 30d | tail -1</code></pre>
  <p>The last line is the key. It is shown once and never stored: copy it then. Revoke it with
    <code>npm run cli -- key revoke &lt;key-id-or-prefix&gt;</code>.</p>
  <p>Then point any OpenAI SDK at the gateway:</p>
  <pre><code>export OPENAI_BASE_URL=http://localhost:8080/v1
export OPENAI_API_KEY=sk-spot-...</code></pre>
</body>
</html>
`;
