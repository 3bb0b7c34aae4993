#!/usr/bin/env node
// Test-only OpenID Provider for kong-oidc-py, built on the certified `oidc-provider` package.
//
//   node tests/idp/provider.mjs [--config cfg.json] [--port N] [--keys jwks.json]
//   (env fallbacks: IDP_CONFIG, IDP_PORT, IDP_KEYS)
//
// Listens on 127.0.0.1 only (plain http; oidc-provider accepts http issuers and only marks
// cookies `secure` when the request itself is https). --port 0 (the default) lets the kernel pick
// a free port; the issuer is `http://127.0.0.1:<port>`. When listening it prints exactly one line
// `READY <issuer>` on stdout. Errors go to stderr. SIGTERM/SIGINT close it and exit 0.
//
// Everything is in memory: a restart forgets sessions, grants and refresh tokens.
// The config file format is documented in tests/idp/README.md.

import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';

import { Provider, errors } from 'oidc-provider';

const HOST = '127.0.0.1';

function fail(message) {
  process.stderr.write(`idp: ${message}\n`);
  process.exit(2);
}

// ---------------------------------------------------------------- command line / config

function parseArgs(argv) {
  const out = {};
  for (let i = 0; i < argv.length; i += 1) {
    const arg = argv[i];
    const m = /^--(config|port|keys)(?:=(.*))?$/.exec(arg);
    if (!m) fail(`unknown argument ${arg}`);
    const value = m[2] !== undefined ? m[2] : argv[(i += 1)];
    if (value === undefined) fail(`${arg} needs a value`);
    out[m[1]] = value;
  }
  return out;
}

const args = parseArgs(process.argv.slice(2));
const configPath = args.config ?? process.env.IDP_CONFIG;
const config = configPath ? JSON.parse(fs.readFileSync(configPath, 'utf8')) : {};
const port = Number(args.port ?? process.env.IDP_PORT ?? config.port ?? 0);
if (!Number.isInteger(port) || port < 0 || port > 65535) fail(`bad port ${port}`);
const keysPath = args.keys ?? process.env.IDP_KEYS ?? config.keys;

const DEFAULT_RESOURCE = 'urn:kong-oidc-py:api';
const DEFAULT_TTL = {
  AccessToken: 3600,
  ClientCredentials: 600,
  AuthorizationCode: 60,
  IdToken: 3600,
  RefreshToken: 86400,
  Session: 86400,
  Grant: 86400,
  Interaction: 600,
};
const ttlConfig = { ...DEFAULT_TTL, ...(config.ttl ?? {}) };

const resources = config.resources ?? {
  [DEFAULT_RESOURCE]: { scope: 'read write admin', alg: 'RS256' },
  'urn:kong-oidc-py:other': { scope: 'read write admin', alg: 'ES256' },
};
const defaultResource = config.default_resource === undefined ? DEFAULT_RESOURCE : config.default_resource;
if (defaultResource !== null && !resources[defaultResource]) {
  fail(`default_resource ${defaultResource} is not in resources`);
}

const users = config.users ?? {
  alice: {
    password: 'alice-password',
    claims: {
      email: 'alice@example.com',
      email_verified: true,
      name: 'Alice Example',
      given_name: 'Alice',
      family_name: 'Example',
      preferred_username: 'alice',
      groups: ['admins', 'staff'],
      roles: ['admin', 'user'],
      realm_access: { roles: ['realm-admin', 'offline_access'] },
    },
  },
  bob: {
    password: 'bob-password',
    claims: {
      email: 'bob@example.com',
      email_verified: true,
      name: 'Bob Example',
      preferred_username: 'bob',
      groups: ['staff'],
      roles: ['user'],
      realm_access: { roles: ['realm-user'] },
    },
  },
};
// Usernames not in `users` log in with any non-empty password (like devInteractions) unless disabled.
const acceptAnyUser = config.accept_any_user ?? true;
// User claims copied into access tokens (in addition to per-user `access_token_claims`).
const accessTokenUserClaims = config.access_token_user_claims
  ?? ['groups', 'roles', 'realm_access', 'preferred_username', 'email'];

const redirectUris = config.redirect_uris ?? ['http://127.0.0.1/callback'];
// ['code'] by default; add 'code id_token' to offer the hybrid flow to the default web clients.
const responseTypes = config.response_types ?? ['code'];
const hybrid = responseTypes.some((t) => t.includes('id_token'));
const postLogoutRedirectUris = config.post_logout_redirect_uris ?? ['http://127.0.0.1/logged-out'];
// true (default): `web` clients are registered as application_type "native", for which
// oidc-provider ignores the port of loopback http redirect URIs (RFC 8252 7.3), so one provider
// serves any Kong port. false: application_type "web", exact redirect URI match.
const loopbackAnyPort = config.loopback_any_port ?? true;

function defaultClients() {
  const web = {
    application_type: loopbackAnyPort ? 'native' : 'web',
    // The hybrid flow's front-channel ID token needs the implicit grant in oidc-provider.
    grant_types: ['authorization_code', 'refresh_token', ...(hybrid ? ['implicit'] : [])],
    response_types: responseTypes,
    redirect_uris: redirectUris,
    post_logout_redirect_uris: postLogoutRedirectUris,
    allowed_scopes: 'read write admin',
    // OIDC Back-Channel Logout: where the provider POSTs logout tokens for the `web` client.
    ...(config.backchannel_logout_uri
      ? { backchannel_logout_uri: config.backchannel_logout_uri, backchannel_logout_session_required: true }
      : {}),
  };
  return [
    {
      client_id: 'm2m',
      client_secret: 'm2m-secret',
      grant_types: ['client_credentials'],
      response_types: [],
      redirect_uris: [],
      token_endpoint_auth_method: 'client_secret_basic',
      allowed_scopes: 'read write admin',
      extra_claims: { groups: ['machines'], roles: ['service'] },
    },
    { ...web, client_id: 'web', client_secret: 'web-secret', token_endpoint_auth_method: 'client_secret_basic' },
    { ...web, client_id: 'web-post', client_secret: 'web-post-secret', token_endpoint_auth_method: 'client_secret_post' },
  ];
}

// Our extensions to client metadata, removed before oidc-provider sees the client:
//   extra_claims   - object merged into every access token issued to the client
//   allowed_scopes - space-separated resource scopes the client may get (default: all of the resource's)
// (oidc-provider's own `scope` metadata only governs OpenID scopes such as openid/profile/email.)
const clientExtraClaims = new Map();
const clientAllowedScopes = new Map();
const clients = [...(config.clients ?? defaultClients()), ...(config.extra_clients ?? [])].map((c) => {
  const { extra_claims: extra, allowed_scopes: allowed, ...metadata } = c;
  if (extra) clientExtraClaims.set(metadata.client_id, extra);
  if (allowed !== undefined) clientAllowedScopes.set(metadata.client_id, new Set(allowed.split(' ')));
  return metadata;
});

// ---------------------------------------------------------------- keys

function thumbprint(jwk) {
  const members = {
    RSA: ['e', 'kty', 'n'], EC: ['crv', 'kty', 'x', 'y'], OKP: ['crv', 'kty', 'x'],
  }[jwk.kty];
  const canonical = JSON.stringify(Object.fromEntries(members.map((k) => [k, jwk[k]])));
  return crypto.createHash('sha256').update(canonical).digest('base64url');
}

function generateKeys() {
  const rsa = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ format: 'jwk' });
  const ec = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ format: 'jwk' });
  return [{ ...rsa, alg: 'RS256', use: 'sig' }, { ...ec, alg: 'ES256', use: 'sig' }]
    .map((k) => ({ ...k, kid: thumbprint(k) }));
}

function loadKeys(path) {
  const jwks = JSON.parse(fs.readFileSync(path, 'utf8'));
  if (!Array.isArray(jwks.keys) || jwks.keys.length === 0) fail(`${path}: no "keys"`);
  for (const k of jwks.keys) {
    if (!k.d) fail(`${path}: key ${k.kid} is not a private key`);
  }
  return jwks.keys.map((k) => ({ use: 'sig', ...k, kid: k.kid ?? thumbprint(k) }));
}

const keys = keysPath ? loadKeys(keysPath) : generateKeys();

// ---------------------------------------------------------------- accounts

function accountClaims(sub) {
  const user = users[sub];
  return { sub, ...(user?.claims ?? {}) };
}

async function findAccount(ctx, sub) {
  if (!users[sub] && !acceptAnyUser) return undefined;
  return {
    accountId: sub,
    async claims() {
      return accountClaims(sub);
    },
  };
}

function checkLogin(username, password) {
  if (!username || !password) return false;
  const user = users[username];
  if (user) return user.password === password;
  return acceptAnyUser;
}

async function extraTokenClaims(ctx, token) {
  const extra = { ...(clientExtraClaims.get(token.clientId) ?? {}) };
  if (token.accountId) {
    const claims = accountClaims(token.accountId);
    for (const name of accessTokenUserClaims) {
      if (claims[name] !== undefined) extra[name] = claims[name];
    }
    Object.assign(extra, users[token.accountId]?.access_token_claims ?? {});
  }
  return Object.keys(extra).length ? extra : undefined;
}

// ---------------------------------------------------------------- pages (no external resources)

const escapeHtml = (s) => String(s).replace(/[&<>"']/g, (c) => ({
  '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;',
}[c]));

const page = (title, body) => `<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>${escapeHtml(title)}</title></head>
<body><h1>${escapeHtml(title)}</h1>
${body}
</body></html>`;

function loginPage(uid, params, error) {
  const hint = params.login_hint ? ` value="${escapeHtml(params.login_hint)}"` : '';
  const err = error ? `<p id="error" role="alert">${escapeHtml(error)}</p>\n` : '';
  return page('Sign-in', `${err}<form id="login-form" method="post" action="/interaction/${escapeHtml(uid)}/login" autocomplete="off">
  <label>Username <input id="username" name="username" type="text" required${hint}></label>
  <label>Password <input id="password" name="password" type="password" required></label>
  <button id="login" type="submit">Sign in</button>
</form>
<p><a id="cancel" href="/interaction/${escapeHtml(uid)}/abort">Cancel</a></p>
<p>Client: <span id="client-id">${escapeHtml(params.client_id)}</span></p>`);
}

const autoConfirmLogout = config.auto_confirm_logout ?? false;

async function logoutSource(ctx, form) {
  const auto = autoConfirmLogout
    ? '<script>document.getElementById("logout-confirm").click();</script>'
    : '';
  ctx.type = 'html';
  ctx.body = page('Sign-out', `${form}
<p>Do you want to sign out?</p>
<button id="logout-confirm" type="submit" form="op.logoutForm" name="logout" value="yes">Yes, sign me out</button>
<button id="logout-cancel" type="submit" form="op.logoutForm">No, stay signed in</button>
${auto}`);
}

async function postLogoutSuccessSource(ctx) {
  ctx.type = 'html';
  ctx.body = page('Signed out', '<p id="logged-out">You are signed out.</p>');
}

async function renderError(ctx, out) {
  ctx.type = 'html';
  ctx.body = page('Error', Object.entries(out)
    .map(([k, v]) => `<p class="error" data-key="${escapeHtml(k)}">${escapeHtml(k)}: ${escapeHtml(v)}</p>`)
    .join('\n'));
}

// ---------------------------------------------------------------- interactions

async function readForm(req) {
  const chunks = [];
  let size = 0;
  for await (const chunk of req) {
    size += chunk.length;
    if (size > 64 * 1024) throw new errors.InvalidRequest('request body too large');
    chunks.push(chunk);
  }
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
}

// Consent is given automatically for whatever the client asked (first-party test clients).
async function grantEverything(provider, details) {
  const { prompt: { details: missing }, grantId, session, params } = details;
  const grant = grantId
    ? await provider.Grant.find(grantId)
    : new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
  if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
  if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
  if (missing.missingResourceScopes) {
    for (const [indicator, scopes] of Object.entries(missing.missingResourceScopes)) {
      grant.addResourceScope(indicator, scopes.join(' '));
    }
  }
  return grant.save();
}

function interactionRoutes(provider) {
  const route = /^\/interaction\/([A-Za-z0-9_-]+)(\/login|\/abort)?$/;
  return async function interactions(ctx, next) {
    const m = route.exec(ctx.path);
    if (!m) return next();
    const [, uid, action] = m;
    ctx.set('cache-control', 'no-store');
    const details = await provider.interactionDetails(ctx.req, ctx.res);
    if (details.uid !== uid) throw new errors.SessionNotFound('interaction mismatch');
    const finish = async (result, merge) => {
      ctx.status = 303;
      ctx.redirect(await provider.interactionResult(ctx.req, ctx.res, result, { mergeWithLastSubmission: merge }));
    };

    if (!action && ctx.method === 'GET') {
      if (details.prompt.name === 'login') {
        ctx.type = 'html';
        ctx.body = loginPage(uid, details.params);
        return undefined;
      }
      if (details.prompt.name === 'consent') {
        return finish({ consent: { grantId: await grantEverything(provider, details) } }, true);
      }
      throw new errors.InvalidRequest(`unsupported prompt ${details.prompt.name}`);
    }
    if (action === '/login' && ctx.method === 'POST') {
      if (details.prompt.name !== 'login') throw new errors.InvalidRequest('not a login prompt');
      const form = await readForm(ctx.req);
      const username = form.get('username') ?? '';
      if (!checkLogin(username, form.get('password') ?? '')) {
        ctx.status = 401;
        ctx.type = 'html';
        ctx.body = loginPage(uid, details.params, 'Invalid username or password.');
        return undefined;
      }
      // Step-up: asking for acr "mfa" stands for a second factor the user completes here.
      const wanted = String(details.params.acr_values ?? '').split(' ');
      const acr = wanted.includes('mfa') ? 'mfa' : 'pwd';
      return finish({ login: { accountId: username, acr, amr: acr === 'mfa' ? ['pwd', 'otp'] : ['pwd'] } }, false);
    }
    if (action === '/abort' && ctx.method === 'GET') {
      return finish({ error: 'access_denied', error_description: 'End-User aborted interaction' }, false);
    }
    ctx.throw(405);
    return undefined;
  };
}

// ---------------------------------------------------------------- provider

function ttlOf(name) {
  const value = ttlConfig[name];
  if (!Number.isInteger(value) || value <= 0) fail(`ttl.${name} must be a positive integer`);
  return value;
}

function resourceServerInfo(ctx, indicator, client) {
  const rs = resources[indicator];
  if (!rs) throw new errors.InvalidTarget();
  let scopes = (rs.scope ?? '').split(' ').filter(Boolean);
  const allowed = client && clientAllowedScopes.get(client.clientId);
  if (allowed) scopes = scopes.filter((s) => allowed.has(s));
  return {
    scope: scopes.join(' '),
    audience: rs.audience ?? indicator,
    accessTokenFormat: rs.format ?? 'jwt',
    ...(rs.access_token_ttl ? { accessTokenTTL: rs.access_token_ttl } : {}),
    jwt: { sign: { alg: rs.alg ?? 'RS256' } },
  };
}

function build(issuer) {
  const provider = new Provider(issuer, {
    clients,
    jwks: { keys },
    findAccount,
    extraTokenClaims,
    renderError,
    cookies: { keys: [crypto.randomBytes(32).toString('base64url')] },
    claims: {
      // acr, amr and auth_time in every ID token (oidc-provider sends them only when asked for),
      // so the step-up tests see a password login's level too.
      acr: null,
      amr: null,
      auth_time: null,
      openid: ['sub', 'acr', 'amr', 'auth_time'],
      email: ['email', 'email_verified'],
      profile: ['name', 'given_name', 'family_name', 'preferred_username', 'groups', 'roles', 'realm_access'],
    },
    conformIdTokenClaims: false,
    // oidc-provider's outgoing requests (back-channel logout) refuse special-use addresses
    // (SSRF protection), loopback included. This test IdP only ever calls loopback gateways: it
    // drops that dispatcher and refuses every other host itself.
    fetch: async (url, options) => {
      const { hostname } = new URL(url);
      if (!['127.0.0.1', 'localhost', '[::1]'].includes(hostname)) {
        throw new Error(`test IdP: outgoing request to ${hostname} refused (loopback only)`);
      }
      const { dispatcher, ...rest } = options;
      return fetch(url, rest);
    },
    responseTypes,
    acrValues: ['pwd', 'mfa'],
    pkce: { required: () => config.pkce_required ?? true },
    // Refresh tokens for every client allowed the refresh_token grant, offline_access or not
    // (without offline_access they end with the OP session, oidc-provider's expiresWithSession).
    issueRefreshToken: async (ctx, client) => client.grantTypeAllowed('refresh_token'),
    rotateRefreshToken: config.rotate_refresh_token ?? true,
    interactions: { url: async (ctx, interaction) => `/interaction/${interaction.uid}` },
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      introspection: { enabled: true },
      jwtIntrospection: { enabled: config.jwt_introspection ?? false },
      revocation: { enabled: true },
      rpInitiatedLogout: { enabled: true, logoutSource, postLogoutSuccessSource },
      backchannelLogout: { enabled: Boolean(config.backchannel_logout_uri) },
      resourceIndicators: {
        enabled: true,
        defaultResource: async (ctx, client, oneOf) => oneOf ?? defaultResource ?? undefined,
        useGrantedResource: async () => true,
        getResourceServerInfo: async (ctx, indicator, client) => resourceServerInfo(ctx, indicator, client),
      },
    },
    ttl: {
      AccessToken: (ctx, token) => token.resourceServer?.accessTokenTTL ?? ttlOf('AccessToken'),
      ClientCredentials: (ctx, token) => token.resourceServer?.accessTokenTTL ?? ttlOf('ClientCredentials'),
      AuthorizationCode: () => ttlOf('AuthorizationCode'),
      IdToken: () => ttlOf('IdToken'),
      RefreshToken: () => ttlOf('RefreshToken'),
      Session: () => ttlOf('Session'),
      Grant: () => ttlOf('Grant'),
      Interaction: () => ttlOf('Interaction'),
    },
  });
  provider.use(interactionRoutes(provider));
  const logError = (name) => (ctx, err) => {
    const detail = err?.error_description ? ` (${err.error_description})` : '';
    process.stderr.write(`idp: ${name} ${ctx?.method ?? ''} ${ctx?.path ?? ''}: ${err?.message ?? err}${detail}\n`);
    if (name === 'server_error' && err?.stack) process.stderr.write(`${err.stack}\n`);
  };
  for (const name of [
    'server_error', 'authorization.error', 'grant.error', 'end_session.error', 'end_session_confirm.error',
    'introspection.error', 'revocation.error', 'userinfo.error', 'jwks.error', 'discovery.error', 'backchannel.error',
  ]) {
    provider.on(name, logError(name));
  }
  return provider;
}

let handler = (req, res) => { res.statusCode = 503; res.end(); };
const server = http.createServer((req, res) => handler(req, res));
server.on('error', (err) => fail(`listen on ${HOST}:${port}: ${err.message}`));
server.listen(port, HOST, () => {
  const issuer = `http://${HOST}:${server.address().port}`;
  try {
    handler = build(issuer).callback();
  } catch (err) {
    fail(`configuration error: ${err.stack ?? err}`);
  }
  process.stdout.write(`READY ${issuer}\n`);
});

function shutdown() {
  server.close(() => process.exit(0));
  server.closeAllConnections();
  setTimeout(() => process.exit(0), 2000).unref();
}
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);
