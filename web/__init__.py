"""The web pages: server-rendered HTML for fans, organisers and the door (issue 18)."""
