package supernode

// dashboardRoutes registers the operators' live dashboard (GET / and its
// assets). It is filled in by the dashboard work (issue 17).
func (s *Supernode) dashboardRoutes() {}
