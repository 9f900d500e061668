// Relay's Web Pixel: registered with Shopify, everything else in relay.js so
// that it can be tested under Node without Shopify's sandbox.
import {register} from '@shopify/web-pixels-extension';

import {startRelayPixel} from './relay.js';

register((api) => {
  startRelayPixel({...api, fetch: (...args) => fetch(...args)});
});
