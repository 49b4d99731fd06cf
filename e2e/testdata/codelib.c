// A library the CODE test's program dlopens.
int codelib_answer(int x) { return x * 21; }
