// The fake GitHub is product code too: `npm start` runs it as the labelled demo identity provider
// (apps/demo-idp). Tests import it from here.
export * from '../../../apps/demo-idp/src/fake-github';
