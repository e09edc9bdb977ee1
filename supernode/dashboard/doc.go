// Package dashboard owns the supernode's operator dashboard: the page
// (index.html, app.js and style.css, embedded in the binary, no external
// resources), the JSON documents the page reads from the authenticated API,
// and the small ring buffers of recent samples behind its sparklines. It
// knows nothing of the scheduler or the seed: the supernode fills the
// documents.
//
// The page itself holds no data and is served without authentication; it
// asks for a token (kept in the tab's sessionStorage) when an API call
// answers 401, and shows nothing else until then.
package dashboard
