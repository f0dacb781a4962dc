import { html, SafeHtml } from './html';

describe('html', () => {
  it('escapes every interpolated value, in content and in quoted attributes', () => {
    const evil = `"><script>alert('x')</script>&`;
    const out = html`<a title="${evil}">${evil}</a>`;
    expect(out).toBeInstanceOf(SafeHtml);
    expect(out.value).toBe('<a title="&quot;&gt;&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;">&quot;&gt;&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;</a>');
  });

  it('keeps markup made by html, joins arrays, and renders nothing for null, undefined and false', () => {
    const items = ['<b>', 'c'].map((x) => html`<li>${x}</li>`);
    expect(html`<ul>${items}</ul>${null}${undefined}${false}${0}`.value).toBe('<ul><li>&lt;b&gt;</li><li>c</li></ul>0');
    expect(String(html`${html`<i>ok</i>`}`)).toBe('<i>ok</i>');
  });
});
