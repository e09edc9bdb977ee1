// Package supernode owns the supernode process: the HTTP control-plane API
// (registration, progress sync, status), the passive CDN seed that fetches
// content from origins in pieces and serves it to peers, origin cache
// validation, and metrics. Scheduling decisions live in package scheduler;
// the wire protocol in package wire; origin access in package origin.
package supernode
