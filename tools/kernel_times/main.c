/* The harness's entry (harness.c is compiled with the model's flags for the widest instruction set). */
int harness_main(int, char**);
int main(int argc, char** argv) { return harness_main(argc, argv); }
