package admin

import (
	"embed"
	"net/http"
)

// pageFiles is the status page: plain HTML, CSS and JavaScript, no build
// step. page/app.js reads /api/status every second and renders it.
//
//go:embed page/index.html page/app.js page/style.css
var pageFiles embed.FS

// pageSecurity is the Content-Security-Policy of the page and its assets:
// everything from this server, nothing inline, nothing from elsewhere. The
// page builds its DOM from data with textContent, and this makes sure a
// slip cannot run a script.
const pageSecurity = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"

// servePage answers "/" with the status page.
func servePage() http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		servePageFile(w, r, "page/index.html")
	}
}

// servePageAsset answers /page/{file} with the page's script and style.
// The files are known, so nothing else of the embedded tree is reachable.
func servePageAsset() http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		switch file := r.PathValue("file"); file {
		case "app.js", "style.css":
			servePageFile(w, r, "page/"+file)
		default:
			http.NotFound(w, r)
		}
	}
}

func servePageFile(w http.ResponseWriter, r *http.Request, name string) {
	h := w.Header()
	h.Set("Content-Security-Policy", pageSecurity)
	h.Set("X-Content-Type-Options", "nosniff")
	// Embedded files have no modification time, so browsers would not
	// revalidate them; no-cache makes an upgraded binary's page load at once.
	h.Set("Cache-Control", "no-cache")
	http.ServeFileFS(w, r, pageFiles, name)
}
