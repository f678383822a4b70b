/* commands.h - funnelctl subcommands; each returns the process exit code. */
#ifndef FD_COMMANDS_H
#define FD_COMMANDS_H
int fd_cmd_gen(int argc, char **argv);         /* tools/cmd_gen.c */
int fd_cmd_broker(int argc, char **argv);      /* tools/cmd_broker.c */
int fd_cmd_bench(int argc, char **argv);       /* tools/cmd_bench.c */
int fd_cmd_features(int argc, char **argv);    /* tools/cmd_features.c */
int fd_cmd_bench_model(int argc, char **argv); /* tools/cmd_bench_model.c */
int fd_cmd_bench_codec(int argc, char **argv); /* tools/cmd_bench_codec.c */
int fd_cmd_eval(int argc, char **argv);        /* tools/cmd_eval.c */
int fd_cmd_replay(int argc, char **argv);      /* tools/cmd_replay.c */
int fd_cmd_user(int argc, char **argv);        /* tools/cmd_features.c */
int fd_cmd_funnel(int argc, char **argv);      /* tools/cmd_views.c */
int fd_cmd_top_risk(int argc, char **argv);    /* tools/cmd_views.c */
int fd_cmd_model(int argc, char **argv);       /* tools/cmd_views.c */
int fd_cmd_status(int argc, char **argv);      /* tools/cmd_views.c */
#endif
