"""Networks: multi-scale encoder, region pooling, MRSA, SEAN generator, discriminator, feature networks."""
