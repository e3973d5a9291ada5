"""Where images come from: registered sources with their legal basis, and the inputs of a batch."""
