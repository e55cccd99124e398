# Used through .cargo/config.toml: lets the quickjs engine (v8x → WAMR) build offline.
# WAMR fetches the simde headers with FetchContent; Debian's libsimde-dev installs them
# under /usr/include/simde, so point FetchContent there and forbid any download.
set(FETCHCONTENT_SOURCE_DIR_SIMDE "/usr/include" CACHE PATH "system simde headers (libsimde-dev)")
set(FETCHCONTENT_FULLY_DISCONNECTED ON CACHE BOOL "never download at build time")
