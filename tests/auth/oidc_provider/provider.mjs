// A real OIDC provider for the auth tests, on 127.0.0.1 only.
//
// The tests write a JSON config and pass its path in OIDC_CONFIG:
//   { "port": 3999,
//     "keys": [<private JWK with kid>...],          // signing keys; the tests know them, to forge tokens
//     "clients": [{ "client_id", "client_secret", "entitlements": [...] }] }
// Every client gets tokens by client_credentials; `sub` is its client_id, standing for a user, and the
// access token (and its introspection answer) carries the client's entitlements in
// `eduperson_entitlement`, the claim Elixir AAI uses for group membership.
// Resource indicators pick the token format: `urn:ga4gh:tes` (the default) gives a JWT for audience
// `urn:ga4gh:tes`, any other `urn:...` gives a JWT for that audience, and one ending in `:opaque`
// gives an opaque token to be checked by RFC 7662 introspection.
import { readFileSync } from 'node:fs';
import Provider, { errors } from 'oidc-provider';

const config = JSON.parse(readFileSync(process.env.OIDC_CONFIG, 'utf8'));
const entitlements = new Map(config.clients.map((c) => [c.client_id, c.entitlements || []]));

const provider = new Provider(`http://127.0.0.1:${config.port}`, {
  jwks: { keys: config.keys },
  clients: config.clients.map((c) => ({
    client_id: c.client_id,
    client_secret: c.client_secret,
    grant_types: ['client_credentials'],
    redirect_uris: [],
    response_types: [],
    scope: 'tes:read tes:write',
  })),
  scopes: ['tes:read', 'tes:write'],
  extraTokenClaims: (ctx, token) => {
    const groups = entitlements.get(token.clientId);
    return { sub: token.clientId, ...(groups.length ? { eduperson_entitlement: groups } : {}) };
  },
  ttl: { ClientCredentials: 600 },
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    introspection: { enabled: true, allowedPolicy: (ctx, client) => client.clientAuthMethod !== 'none' },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => 'urn:ga4gh:tes',
      useGrantedResource: () => true,
      getResourceServerInfo: (ctx, indicator) => {
        if (!indicator.startsWith('urn:')) throw new errors.InvalidTarget();
        const opaque = indicator.endsWith(':opaque');
        return {
          audience: indicator,
          scope: 'tes:read tes:write',
          accessTokenFormat: opaque ? 'opaque' : 'jwt',
          ...(opaque ? {} : { jwt: { sign: { alg: config.keys[0].alg } } }),
        };
      },
    },
  },
});

provider.listen(config.port, '127.0.0.1', () => {
  console.log(`oidc-provider ready on http://127.0.0.1:${config.port}`);
});
