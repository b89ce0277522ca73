"""The application: composition root, app factory, server, the `ticketblitz` CLI and the
embedded stack. The only package that may import every other one."""
