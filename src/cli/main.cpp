#include <iostream>
int main() { std::cout << "autoqnn\n"; }
