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
// Relay's intake refuses longer page URLs; a cut one still names the page.
const MAX_URL_LENGTH = 2048;

export function startRelayPixel({analytics, browser, init, settings, fetch} = {}) {
  const endpoint = settings && settings.relayUrl;
  const shop = settings && settings.shopDomain;
  if (!endpoint || !shop) return; // not set up for this shop yet

  // Shopify loads the pixel only with marketing consent; what else the
  // visitor allowed, and any later change, is passed on for Relay to honour.
  let consent = guard(() => readConsent(init?.customerPrivacy)) || readConsent(null);
  guard(() =>
    settle(
      analytics.subscribe('visitorConsentCollected', (event) => {
        consent = guard(() => readConsent(event?.customerPrivacy)) || consent;
      }),
    ),
  );

  // One lookup per page: the cookie cannot change under the pixel's feet
  // except by the pixel itself.
  const clickId = guardAsync(() => rememberClickId(browser, init));

  for (const name of SUBSCRIBED_EVENTS) {
    guard(() =>
      settle(
        analytics.subscribe(name, (event) =>
          guardAsync(async () => {
            // Without the visitor's id an event ties to no one.
            if (!event || !event.clientId) return;
            const envelope = buildEnvelope({
              shop,
              event,
              init,
              consent,
              click: await clickId,
              // Read now: the first add-to-cart creates the cart after the
              // page (and init) loaded.
              cart: (await guardAsync(() => cartTokenFromCookie(browser))) || null,
            });
            await send(fetch, endpoint, envelope);
          }),
        ),
      ),
    );
  }
}

export function buildEnvelope({shop, event, init, consent, click, cart}) {
  const location = event?.context?.document?.location || {};
  return {
    v: ENVELOPE_VERSION,
    shop,
    sent_at: new Date().toISOString(),
    consent,
    click_id: click || null,
    cart_token: cart || cartToken(init) || null,
    customer: loggedInCustomer(init),
    event: {
      id: String(event.id),
      name: String(event.name),
      client_id: String(event.clientId),
      timestamp: String(event.timestamp),
      seq: typeof event.seq === 'number' ? event.seq : null,
      url: cut(location.href, MAX_URL_LENGTH),
      referrer: cut(event?.context?.document?.referrer, MAX_URL_LENGTH),
      user_agent: cut(event?.context?.navigator?.userAgent, 1024),
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
  const text = wellFormed(value).trim();
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

// The cart cookie holds `<token>?key=<secret>`, URL-encoded; only the token
// is sent.
export async function cartTokenFromCookie(browser) {
  const raw = decodeSafely(await browser.cookie.get('cart'));
  const token = raw ? raw.split('?')[0] : null;
  return token && CART_TOKEN.test(token) ? token : null;
}

const CART_TOKEN = /^[A-Za-z0-9_=+/.-]{1,255}$/;

// A logged-in customer, as Shopify tells the pixel. Relay keeps only
// digests of the email and phone, for this visitor's own events.
export function loggedInCustomer(init) {
  const customer = init?.data?.customer;
  if (!customer || typeof customer !== 'object') return null;
  const id = String(customer.id ?? '').replace(/^gid:\/\/shopify\/Customer\//, '');
  const text = (value, length) =>
    typeof value === 'string' && value && value.length <= length
      ? wellFormed(value)
      : null;
  return {
    id: /^[0-9]{1,20}$/.test(id) ? id : null,
    email: text(customer.email, 320),
    phone: text(customer.phone, 64),
  };
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

// Browsers cap a keepalive request's body at 64 KiB, and so does Relay's
// intake. A checkout with very many lines is sent with slimmer lines, then
// without them: the ids, totals and contact that matter fit either way.
export const MAX_BEACON_BYTES = 60 * 1024;

export function serialize(envelope) {
  let body = JSON.stringify(envelope);
  const checkout = envelope.event?.data?.checkout;
  const lines = checkout && checkout.lineItems;
  if (body.length <= MAX_BEACON_BYTES || !Array.isArray(lines)) return body;
  const slim = (line) => ({
    id: line?.id,
    quantity: line?.quantity,
    variant: {
      id: line?.variant?.id,
      price: line?.variant?.price,
      product: {id: line?.variant?.product?.id},
    },
  });
  const withLines = (lineItems) => ({
    ...envelope,
    event: {
      ...envelope.event,
      data: {...envelope.event.data, checkout: {...checkout, lineItems}},
    },
  });
  body = JSON.stringify(withLines(lines.map(slim)));
  return body.length <= MAX_BEACON_BYTES ? body : JSON.stringify(withLines([]));
}

// text/plain keeps the request "simple": no CORS preflight, and keepalive
// lets it finish while the visitor navigates away.
export function send(fetch, endpoint, envelope) {
  return fetch(endpoint, {
    method: 'POST',
    body: serialize(envelope),
    headers: {'Content-Type': 'text/plain'},
    keepalive: true,
    credentials: 'omit',
  });
}

function cut(value, length) {
  return typeof value === 'string' ? wellFormed(value.slice(0, length)) : null;
}

// A lone UTF-16 surrogate makes the whole beacon unreadable as UTF-8.
function wellFormed(text) {
  return typeof text.toWellFormed === 'function' ? text.toWellFormed() : text;
}

// A subscription may hand back a promise; a rejected one must not surface
// as an unhandled rejection in the page.
function settle(result) {
  if (result && typeof result.catch === 'function') result.catch(() => {});
  return result;
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
