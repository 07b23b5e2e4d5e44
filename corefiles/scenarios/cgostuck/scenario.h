#ifndef CGOSTUCK_SCENARIO_H
#define CGOSTUCK_SCENARIO_H
#define SC_MAX 4096
int scenario_glibc(void);
long scenario_tid(int slot);
void scenario_mark(int slot);
int holder_ready(void);
void block_read(int slot);
void block_cond(int slot);
void hold_mutex_then_sleep(int slot);
void block_mutex(int slot);
void block_sleep(int slot);
void block_accept(int slot);
void block_pause(int slot);
void call_back_into_go(int slot);
void start_extra_parked(int slot);
void start_extra_in_c(int slot);
void start_foreign(int slot);
void hold_rwlock_then_sleep(int slot);
int rwlock_ready(void);
void block_rwlock(int slot);
void block_sem(int slot);
void block_write(int slot);
void block_connect(int slot);
void block_recv(int slot);
void block_send(int slot);
void block_poll(int slot);
void block_dns(int slot);
void block_wait_child(int slot);
void hold_flock_then_sleep(int slot);
int flock_holder_ready(void);
void block_flock(int slot);
void hold_loader_then_sleep(int slot);
int loader_holder_ready(void);
void block_loader(int slot);
void hold_stdio_then_sleep(int slot);
int stdio_holder_ready(void);
void block_stdio(int slot);
void busy_in_c(int slot);
void block_in_signal_handler(int slot);
void deadlock_ab(int slot);
void deadlock_ba(int slot);
void start_malloc_self_deadlock(int slot);
void start_setenv_self_deadlock(int slot);
void block_setenv(int slot);
int cuda_open(const char *path);
void block_cuda(int slot);
void fork_wedge_then_ready(int fork_slot, int waiter_slot, long pid, long main_goid);
#endif
