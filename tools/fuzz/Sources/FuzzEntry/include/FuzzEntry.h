/* Entry points of the fuzz executables (see entry.c); nothing for Swift to call. */
#ifndef LAMINA_FUZZ_ENTRY_H
#define LAMINA_FUZZ_ENTRY_H
int FuzzModelSource_main(int argc, char** argv);
int FuzzTensorFiles_main(int argc, char** argv);
#endif
