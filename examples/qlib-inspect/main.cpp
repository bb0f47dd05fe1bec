// placeholder until the IO readers land
int main() { return 0; }
