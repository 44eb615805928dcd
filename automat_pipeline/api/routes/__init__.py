"""The routes: each module one router, thin over the repository and the launcher."""
