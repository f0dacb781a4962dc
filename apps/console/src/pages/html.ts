import { escapeHtml } from './layout';

/** Markup that is already safe: what {@link html} returns, interpolated into another `html` template as it is. */
export class SafeHtml {
  constructor(readonly value: string) {}

  toString(): string {
    return this.value;
  }
}

function render(v: unknown): string {
  if (v instanceof SafeHtml) return v.value;
  if (Array.isArray(v)) return v.map(render).join('');
  if (v === null || v === undefined || v === false) return '';
  return escapeHtml(v);
}

/**
 * An auto-escaping template tag: every interpolated value is escaped for HTML content and attribute values,
 * except markup made by `html` itself (a {@link SafeHtml}); arrays are joined; null, undefined and false render
 * nothing. Attribute values must be quoted in the template.
 */
export function html(strings: TemplateStringsArray, ...values: unknown[]): SafeHtml {
  let out = strings[0];
  for (let i = 0; i < values.length; i++) out += render(values[i]) + strings[i + 1];
  return new SafeHtml(out);
}
