#ifndef LIBS_H
#define LIBS_H
#define SLOTS 16
enum {
	S_SQLITE_WRITER, S_SQLITE_BUSY, S_TLS_HANDSHAKE, S_TLS_SERVER, S_CURL_CONNECTING,
	S_CURL_WAITING, S_UV_CALLBACK, S_SILENT_SERVER, S_BOUNDARY_HOLDER, S_BOUNDARY_WAITER,
	S_BOUNDARY_FOREIGN, S_SQLITE_READER, S_NSLOTS
};
long slot_tid(int slot);
int slot_ready(int slot);
void mark_uv(int slot);
int setup(const char *dir);
void sqlite_writer(int slot);
void sqlite_busy_waiter(int slot);
void sqlite_reader(int slot);
void tls_handshake(int slot);
void start_tls_server(int slot);
void curl_connecting(int slot);
void curl_waiting(int slot);
void uv_loop_callback(int slot);
void boundary_take(int slot);
void boundary_wait(int slot);
void start_boundary_foreign(int slot);
#endif
