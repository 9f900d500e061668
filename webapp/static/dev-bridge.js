// Development mode only: what App Bridge gives Relay's pages inside the
// Shopify admin, without the admin. Session tokens come from Relay's own
// development endpoint, for the shop the page was opened for.
(function () {
  "use strict";
  const shop = document.currentScript.dataset.shop;
  window.shopify = {
    idToken: async function () {
      const url = "/dev/session-token?shop=" + encodeURIComponent(shop);
      const response = await fetch(url);
      if (!response.ok) throw new Error("no development session token");
      return response.text();
    },
  };
})();
