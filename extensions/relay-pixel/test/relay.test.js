// Relay's pixel under Node's test runner, against fakes of what Shopify's
// sandbox gives it (analytics, browser, init) and of fetch. No network.
import assert from 'node:assert/strict';
import {readFileSync} from 'node:fs';
import {test} from 'node:test';

import {
  SUBSCRIBED_EVENTS,
  cartToken,
  clickIdFromUrl,
  loggedInCustomer,
  startRelayPixel,
} from '../src/relay.js';

const FIXTURES = new URL('../../../tests/fixtures/shopify/', import.meta.url);
const EPIK =
  'dj0yJnU9RkFLRV9FUElLX0ZPUl9URVNUUyZwPTEmbj1leGFtcGxlJnQ9QUFBQUFBQUFBQUFB';
const SETTINGS = {
  relayUrl: 'https://relay.example/pixel',
  shopDomain: 'example-shop.myshopify.com',
};
const CART_TOKEN = 'Z2NwLXVzLWVhc3QxOjAxSlpYNEVYQU1QTEVDQVJUMDAwMDAwMDAx';

function fixture(name) {
  return JSON.parse(readFileSync(new URL(name, FIXTURES), 'utf8'));
}

function fakeShopify({href, cookies = {}, cookieFails = false} = {}) {
  const handlers = {};
  const sent = [];
  const setCookies = [];
  const api = {
    settings: SETTINGS,
    init: {
      context: {document: {location: {href: href ?? 'https://www.example-shop.com/'}}},
      data: {cart: {id: `gid://shopify/Cart/${CART_TOKEN}?key=secretkey`}},
      customerPrivacy: {
        analyticsProcessingAllowed: true,
        marketingAllowed: true,
        preferencesProcessingAllowed: false,
        saleOfDataAllowed: true,
      },
    },
    analytics: {
      subscribe(name, handler) {
        handlers[name] = handler;
      },
    },
    browser: {
      cookie: {
        async get(name) {
          if (cookieFails) throw new Error('cookie access denied');
          return cookies[name] ?? '';
        },
        async set(cookie) {
          if (cookieFails) throw new Error('cookie access denied');
          setCookies.push(cookie);
          return cookie;
        },
      },
    },
    fetch: async (url, options) => {
      sent.push({url, options, body: JSON.parse(options.body)});
      return {ok: true, status: 204};
    },
  };
  return {api, handlers, sent, setCookies};
}

async function emit(shopify, event) {
  await shopify.handlers[event.name](event);
}

test('subscribes to every standard event Relay uses, and to consent changes', () => {
  const shopify = fakeShopify();
  startRelayPixel(shopify.api);

  assert.deepEqual(Object.keys(shopify.handlers).sort(), [
    ...SUBSCRIBED_EVENTS,
    'visitorConsentCollected',
  ].sort());
});

test('a landing page with epik sends it, kept in a first-party cookie', async () => {
  const pageViewed = fixture('pixel_page_viewed.json');
  const shopify = fakeShopify({href: pageViewed.context.document.location.href});
  startRelayPixel(shopify.api);

  await emit(shopify, pageViewed);

  assert.deepEqual(shopify.setCookies, [
    `_epik=${encodeURIComponent(EPIK)}; path=/; max-age=31536000; SameSite=Lax`,
  ]);
  const [{url, options, body}] = shopify.sent;
  assert.equal(url, 'https://relay.example/pixel');
  assert.deepEqual(
    {...options, body: undefined},
    {
      method: 'POST',
      body: undefined,
      headers: {'Content-Type': 'text/plain'},
      keepalive: true,
      credentials: 'omit',
    },
  );
  assert.equal(typeof body.sent_at, 'string');
  assert.deepEqual({...body, sent_at: null}, {
    v: 1,
    shop: 'example-shop.myshopify.com',
    sent_at: null,
    consent: {analytics: true, marketing: true, preferences: false, sale_of_data: true},
    click_id: {epik: EPIK, source: 'url'},
    cart_token: CART_TOKEN,
    customer: null,
    event: {
      id: pageViewed.id,
      name: 'page_viewed',
      client_id: pageViewed.clientId,
      timestamp: pageViewed.timestamp,
      seq: pageViewed.seq,
      url: pageViewed.context.document.location.href,
      referrer: pageViewed.context.document.referrer,
      user_agent: pageViewed.context.navigator.userAgent,
      data: pageViewed.data,
    },
  });
});

test('a later page without epik in its URL sends the cookie\'s click id', async () => {
  const checkout = fixture('pixel_checkout_completed.json');
  const shopify = fakeShopify({
    href: checkout.context.document.location.href,
    cookies: {_epik: encodeURIComponent(EPIK)},
  });
  startRelayPixel(shopify.api);

  await emit(shopify, checkout);

  assert.deepEqual(shopify.setCookies, []);
  const [{body}] = shopify.sent;
  assert.deepEqual(body.click_id, {epik: EPIK, source: 'cookie'});
  assert.equal(body.event.data.checkout.order.id, '6123456789012');
});

test('consent changes reported later go with the next events', async () => {
  const shopify = fakeShopify();
  startRelayPixel(shopify.api);

  shopify.handlers.visitorConsentCollected({
    customerPrivacy: {
      analyticsProcessingAllowed: false,
      marketingAllowed: true,
      preferencesProcessingAllowed: false,
      saleOfDataAllowed: false,
    },
  });
  await emit(shopify, fixture('pixel_product_added_to_cart.json'));

  assert.deepEqual(shopify.sent[0].body.consent, {
    analytics: false,
    marketing: true,
    preferences: false,
    sale_of_data: false,
  });
});

test('nothing is thrown into the page when cookies or the network fail', async () => {
  const shopify = fakeShopify({cookieFails: true});
  shopify.api.fetch = async () => {
    throw new TypeError('Failed to fetch');
  };
  startRelayPixel(shopify.api);

  await emit(shopify, fixture('pixel_page_viewed.json'));
  await emit(shopify, {name: 'page_viewed'}); // an event missing everything
});

test('a broken analytics object does not throw either', () => {
  const shopify = fakeShopify();
  shopify.api.analytics = {
    subscribe() {
      throw new Error('sandbox torn down');
    },
  };

  assert.doesNotThrow(() => startRelayPixel(shopify.api));
});

test('without its settings the pixel stays silent', async () => {
  const shopify = fakeShopify();
  shopify.api.settings = {};
  startRelayPixel(shopify.api);

  assert.deepEqual(shopify.handlers, {});
});

test('click ids and cart tokens are read strictly', () => {
  assert.equal(clickIdFromUrl('https://shop.example/?epik=abc'), 'abc');
  assert.equal(clickIdFromUrl('https://shop.example/?epik='), null);
  assert.equal(clickIdFromUrl(`https://shop.example/?epik=${'a'.repeat(513)}`), null);
  assert.equal(clickIdFromUrl('not a url'), null);
  assert.equal(clickIdFromUrl(undefined), null);
  const cart = {data: {cart: {id: 'gid://shopify/Cart/tok123?key=k'}}};
  assert.equal(cartToken(cart), 'tok123');
  assert.equal(cartToken({data: {cart: null}}), null);
});

test('Relay\'s own code stays far below Shopify\'s 128 KB bundle limit', () => {
  const size =
    readFileSync(new URL('../src/relay.js', import.meta.url)).length +
    readFileSync(new URL('../src/index.js', import.meta.url)).length;
  assert.ok(size < 16 * 1024, `${size} bytes`);
});

test('a checkout with many lines is slimmed to fit keepalive', async () => {
  const checkout = fixture('pixel_checkout_completed.json');
  const line = checkout.data.checkout.lineItems[0];
  checkout.data.checkout.lineItems = Array.from({length: 300}, () => line);
  const shopify = fakeShopify();
  startRelayPixel(shopify.api);

  await emit(shopify, checkout);

  const [{options, body}] = shopify.sent;
  assert.ok(options.body.length <= 60 * 1024, `${options.body.length} bytes`);
  assert.equal(body.event.data.checkout.order.id, '6123456789012');
  assert.equal(body.event.data.checkout.token, '7c1f2e3d4b5a69788796a5b4c3d2e1f0');
  assert.equal(body.event.data.checkout.email, 'jane@example.com');
});

test('text that is not well-formed Unicode is mended before it is sent', async () => {
  const shopify = fakeShopify({cookies: {_epik: 'abc\uD800'}});
  startRelayPixel(shopify.api);
  const page = fixture('pixel_page_viewed.json');
  page.context.navigator.userAgent = 'Mozilla\uDFFF';
  page.context.document.location.href = `https://shop.example/${'x'.repeat(3000)}`;

  await emit(shopify, page);

  const [{body}] = shopify.sent;
  assert.equal(body.click_id.epik, 'abc\uFFFD');
  assert.equal(body.event.user_agent, 'Mozilla\uFFFD');
  assert.equal(body.event.url.length, 2048);
});

test('an event without a client id is not sent', async () => {
  const shopify = fakeShopify();
  startRelayPixel(shopify.api);
  const page = fixture('pixel_page_viewed.json');
  delete page.clientId;

  await emit(shopify, page);

  assert.deepEqual(shopify.sent, []);
});

test('an add-to-cart names the cart in the cookie, made after page load', async () => {
  const added = fixture('pixel_product_added_to_cart.json');
  const cookie = encodeURIComponent('newcart42?key=s3cret');
  const shopify = fakeShopify({cookies: {cart: cookie}});
  shopify.api.init.data.cart = null; // the page loaded with no cart yet
  startRelayPixel(shopify.api);

  await emit(shopify, added);

  const [{body}] = shopify.sent;
  assert.equal(body.cart_token, 'newcart42');
  assert.equal(body.event.data.cartLine.merchandise.id, '44012345678901');
});

test('a logged-in customer is named; odd values are left out', () => {
  const init = (customer) => ({data: {customer}});
  assert.deepEqual(
    loggedInCustomer(
      init({id: '7712345678901', email: 'jane@example.com', phone: '+15555550100'}),
    ),
    {id: '7712345678901', email: 'jane@example.com', phone: '+15555550100'},
  );
  assert.deepEqual(
    loggedInCustomer(init({id: 'gid://shopify/Customer/77', email: 5, phone: ''})),
    {id: '77', email: null, phone: null},
  );
  assert.deepEqual(loggedInCustomer(init({id: '1; drop', email: 'x'.repeat(321)})), {
    id: null,
    email: null,
    phone: null,
  });
  assert.equal(loggedInCustomer(init(null)), null);
  assert.equal(loggedInCustomer({}), null);
});
