package subscribe

import (
	"embed"
	"encoding/json"
	"io/fs"
	"net/http"

	"github.com/sluicehq/sluice/pipeline"
)

// uiFiles is the browser view: a page, a script and a style sheet, served
// as they are (no build step, nothing loaded from elsewhere).
//
//go:embed ui
var uiFiles embed.FS

// mountUI serves the browser view at cfg.UI: the files of ui/ and
// config.json, which tells the page where to subscribe.
func (e *Endpoint) mountUI(srv *pipeline.Servers) error {
	root, err := fs.Sub(uiFiles, "ui")
	if err != nil {
		return err
	}
	prefix := e.cfg.UI
	conf, err := json.Marshal(struct {
		Path        string   `json:"path"`
		Topics      []string `json:"topics"`
		HeartbeatMS int64    `json:"heartbeat_ms"`
		// Auth tells the page to ask for a token.
		Auth bool `json:"auth"`
	}{e.cfg.Path, e.cfg.Topics, e.cfg.Heartbeat.Milliseconds(), e.cfg.Auth != nil})
	if err != nil {
		return err
	}
	files := http.StripPrefix(prefix, http.FileServerFS(root))
	page := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", "default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data:")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Cache-Control", "no-cache")
		if r.URL.Path == prefix+"/config.json" {
			h.Set("Content-Type", "application/json")
			_, _ = w.Write(conf)
			return
		}
		files.ServeHTTP(w, r)
	})
	if err := srv.Handle(e.cfg.Listen, prefix, http.RedirectHandler(prefix+"/", http.StatusMovedPermanently)); err != nil {
		return err
	}
	return srv.Handle(e.cfg.Listen, prefix+"/", page)
}
