// What Relay's pixel does with the standard events Shopify gives it.
//
// Each event the merchant's visitor triggers is sent to Relay as one small
// JSON envelope, with the visitor's client id, the Pinterest click id, the
// consent Shopify reports and the page it happened on. The pixel runs in
// Shopify's strict sandbox: it must never throw into the page, so every
// step that could fail is guarded, and a beacon that cannot be sent is
// dropped silently (Relay's server-side webhooks still see the order).

export const ENVELOPE_VERSION = 1;

export const SUBSCRIBED_EVENTS = [
  'page_viewed',
  'product_viewed',
  'collection_viewed',
  'search_submitted',
  'product_added_to_cart',
  'checkout_started',
  'payment_info_submitted',
  'checkout_completed',
];

const CLICK_COOKIE = '_epik';
// Pinterest's own tag keeps its click id for a year.
const CLICK_COOKIE_SECONDS = 365 * 24 * 3600;
const MAX_CLICK_ID_LENGTH = 512;

export function startRelayPixel({analytics, browser, init, settings, fetch}) {
  const endpoint = settings && settings.relayUrl;
  const shop = settings && settings.shopDomain;
  if (!endpoint || !shop) return; // not set up for this shop yet

  // Shopify loads the pixel only with marketing consent; what else the
  // visitor allowed, and any later change, is passed on for Relay to honour.
  let consent = readConsent(init?.customerPrivacy);
  guard(() =>
    analytics.subscribe('visitorConsentCollected', (event) => {
      consent = readConsent(event?.customerPrivacy);
    }),
  );

  // One lookup per page: the cookie cannot change under the pixel's feet
  // except by the pixel itself.
  const clickId = guardAsync(() => rememberClickId(browser, init));

  for (const name of SUBSCRIBED_EVENTS) {
    guard(() =>
      analytics.subscribe(name, (event) =>
        guardAsync(async () => {
          const envelope = buildEnvelope({
            shop,
            event,
            init,
            consent,
            click: await clickId,
          });
          await send(fetch, endpoint, envelope);
        }),
      ),
    );
  }
}

export function buildEnvelope({shop, event, init, consent, click}) {
  const location = event?.context?.document?.location || {};
  return {
    v: ENVELOPE_VERSION,
    shop,
    sent_at: new Date().toISOString(),
    consent,
    click_id: click || null,
    cart_token: cartToken(init) || null,
    event: {
      id: String(event.id),
      name: String(event.name),
      client_id: String(event.clientId),
      timestamp: String(event.timestamp),
      seq: typeof event.seq === 'number' ? event.seq : null,
      url: typeof location.href === 'string' ? location.href : null,
      referrer: stringOrNull(event?.context?.document?.referrer),
      user_agent: stringOrNull(event?.context?.navigator?.userAgent),
      data: event.data || {},
    },
  };
}

// The click id a Pinterest ad put on the landing URL, kept in a first-party
// cookie so later pages (and the checkout) still carry it; else the cookie
// Pinterest's tag or an earlier page left.
export async function rememberClickId(browser, init) {
  const href = init?.context?.document?.location?.href;
  const fromUrl = clickIdFromUrl(href);
  if (fromUrl) {
    await guardAsync(() =>
      browser.cookie.set(
        `${CLICK_COOKIE}=${encodeURIComponent(fromUrl)}; path=/; ` +
          `max-age=${CLICK_COOKIE_SECONDS}; SameSite=Lax`,
      ),
    );
    return {epik: fromUrl, source: 'url'};
  }
  const stored = await guardAsync(() => browser.cookie.get(CLICK_COOKIE));
  const fromCookie = validClickId(decodeSafely(stored));
  return fromCookie ? {epik: fromCookie, source: 'cookie'} : null;
}

export function clickIdFromUrl(href) {
  if (typeof href !== 'string') return null;
  try {
    return validClickId(new URL(href).searchParams.get('epik'));
  } catch {
    return null;
  }
}

function validClickId(value) {
  if (typeof value !== 'string') return null;
  const text = value.trim();
  return text && text.length <= MAX_CLICK_ID_LENGTH ? text : null;
}

// Shopify names the cart `gid://shopify/Cart/<token>?key=...`; the token is
// what cart and checkout webhooks carry.
export function cartToken(init) {
  const id = init?.data?.cart?.id;
  if (typeof id !== 'string') return null;
  const match = /^gid:\/\/shopify\/Cart\/([^?]+)/.exec(id);
  return match ? match[1] : null;
}

export function readConsent(privacy) {
  const flag = (name) =>
    privacy && typeof privacy[name] === 'boolean' ? privacy[name] : null;
  return {
    analytics: flag('analyticsProcessingAllowed'),
    marketing: flag('marketingAllowed'),
    preferences: flag('preferencesProcessingAllowed'),
    sale_of_data: flag('saleOfDataAllowed'),
  };
}

// text/plain keeps the request "simple": no CORS preflight, and keepalive
// lets it finish while the visitor navigates away.
export function send(fetch, endpoint, envelope) {
  return fetch(endpoint, {
    method: 'POST',
    body: JSON.stringify(envelope),
    headers: {'Content-Type': 'text/plain'},
    keepalive: true,
    credentials: 'omit',
  });
}

function stringOrNull(value) {
  return typeof value === 'string' ? value : null;
}

function decodeSafely(value) {
  if (typeof value !== 'string') return null;
  try {
    return decodeURIComponent(value);
  } catch {
    return null;
  }
}

function guard(step) {
  try {
    return step();
  } catch {
    return undefined;
  }
}

async function guardAsync(step) {
  try {
    return await step();
  } catch {
    return undefined;
  }
}
