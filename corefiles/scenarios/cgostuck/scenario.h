#ifndef CGOSTUCK_SCENARIO_H
#define CGOSTUCK_SCENARIO_H
#define SC_MAX 4096
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
#endif
