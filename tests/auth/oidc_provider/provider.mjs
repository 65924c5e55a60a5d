// A real OIDC provider for the auth tests, on 127.0.0.1 only.
//
// The tests write a JSON config and pass its path in OIDC_CONFIG:
//   { "port": 3999,
//     "keys": [<private JWK with kid>...],          // signing keys; the tests know them, to forge tokens
//     "clients": [{ "client_id", "client_secret", "entitlements": [...] }],
//     "default_user": "alice" }                    // who logs in when the request has no login_hint
// Each confidential client stands for one user: it gets tokens by client_credentials, `sub` is its
// client_id, and the access token (and its introspection answer) carries its entitlements in
// `eduperson_entitlement`, the claim Elixir AAI uses for group membership.
// Resource indicators pick the token format: `urn:ga4gh:tes` (the default) gives a JWT for audience
// `urn:ga4gh:tes`, any other `urn:...` gives a JWT for that audience, and one ending in `:opaque`
// gives an opaque token to be checked by RFC 7662 introspection.
//
// The public client `tesk-swagger` is what Swagger UI's Authorize button uses: authorization code with
// PKCE, redirect to `http://127.0.0.1[:any port]/swagger-ui/oauth2-redirect.html`, token requests from
// pages on 127.0.0.1 (CORS). Its login needs no form: the authorization request's `login_hint` (or
// else `default_user`) names the user (one of the clients above), who is logged in and consents at once. Its access tokens are opaque and meant for the userinfo endpoint,
// which answers `sub` and `eduperson_entitlement`, as Elixir AAI does.
import { readFileSync } from 'node:fs';
import Provider, { errors } from 'oidc-provider';

const config = JSON.parse(readFileSync(process.env.OIDC_CONFIG, 'utf8'));
const entitlements = new Map(config.clients.map((c) => [c.client_id, c.entitlements || []]));
const SWAGGER = 'tesk-swagger';

const provider = new Provider(`http://127.0.0.1:${config.port}`, {
  jwks: { keys: config.keys },
  clients: [
    ...config.clients.map((c) => ({
      client_id: c.client_id,
      client_secret: c.client_secret,
      grant_types: ['client_credentials'],
      redirect_uris: [],
      response_types: [],
      scope: 'tes:read tes:write',
    })),
    {
      client_id: SWAGGER,
      application_type: 'native',
      token_endpoint_auth_method: 'none',
      grant_types: ['authorization_code'],
      response_types: ['code'],
      redirect_uris: ['http://127.0.0.1/swagger-ui/oauth2-redirect.html'],
    },
  ],
  scopes: ['openid', 'tes:read', 'tes:write', 'eduperson_entitlement'],
  claims: { openid: ['sub'], eduperson_entitlement: ['eduperson_entitlement'] },
  findAccount: (ctx, id) =>
    entitlements.has(id)
      ? { accountId: id, claims: () => ({ sub: id, eduperson_entitlement: entitlements.get(id) }) }
      : undefined,
  extraTokenClaims: (ctx, token) => {
    if (token.accountId) return undefined;
    const groups = entitlements.get(token.clientId);
    return { sub: token.clientId, ...(groups.length ? { eduperson_entitlement: groups } : {}) };
  },
  pkce: { required: () => true },
  clientBasedCORS: (ctx, origin, client) =>
    client.clientId === SWAGGER && /^http:\/\/127\.0\.0\.1(:\d+)?$/.test(origin),
  ttl: { ClientCredentials: 600 },
  interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    introspection: { enabled: true, allowedPolicy: (ctx, client) => client.clientAuthMethod !== 'none' },
    resourceIndicators: {
      enabled: true,
      defaultResource: (ctx, client) => (client.clientId === SWAGGER ? undefined : 'urn:ga4gh:tes'),
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

// Log the user named by login_hint in and grant what was asked, without a form.
provider.use(async (ctx, next) => {
  if (!ctx.path.startsWith('/interaction/')) return next();
  const details = await provider.interactionDetails(ctx.req, ctx.res);
  const accountId = details.params.login_hint || config.default_user;
  if (!entitlements.has(accountId)) {
    ctx.status = 400;
    ctx.body = { error: 'unknown user in login_hint' };
    return undefined;
  }
  const grant = new provider.Grant({ accountId, clientId: details.params.client_id });
  grant.addOIDCScope(details.params.scope);
  const grantId = await grant.save();
  return provider.interactionFinished(ctx.req, ctx.res, { login: { accountId }, consent: { grantId } });
});

provider.listen(config.port, '127.0.0.1', () => {
  console.log(`oidc-provider ready on http://127.0.0.1:${config.port}`);
});
