package dashboard

import (
	"embed"
	"net/http"
)

//go:embed index.html app.js style.css
var assets embed.FS

// AssetPrefix is where the page's script and style sheet are served.
const AssetPrefix = "/dashboard/"

// Handler serves the page: GET / (index.html) and GET /dashboard/app.js,
// /dashboard/style.css. Mount it at "GET /{$}" and "GET /dashboard/". The
// answers carry no data, so they need no token; a Content-Security-Policy
// keeps the page to its own origin.
func Handler() http.Handler {
	files := http.FileServerFS(assets)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cache-Control", "no-cache")
		switch r.URL.Path {
		case "/":
			http.ServeFileFS(w, r, assets, "index.html")
		case AssetPrefix + "app.js", AssetPrefix + "style.css":
			r2 := r.Clone(r.Context())
			r2.URL.Path = r.URL.Path[len(AssetPrefix)-1:]
			files.ServeHTTP(w, r2)
		default:
			http.NotFound(w, r)
		}
	})
}
